"""The only tags and filters an email template may use (the sandbox's builtins).

Left out: anything that loads or includes other templates, reaches the URL map or the
request (`load`, `include`, `extends`, `url`, `csrf_token`, `querystring`), dumps internals
(`debug`, `pprint`), or turns escaping off (`autoescape`, `filter`, `safe`, `safeseq`).
"""

from __future__ import annotations

import itertools
import re

from django.template import Library, defaultfilters, defaulttags

ALLOWED_TAGS = {"comment", "cycle", "firstof", "for", "if", "ifchanged", "now", "resetcycle",
                "spaceless", "templatetag", "verbatim", "widthratio", "with"}
BLOCKED_FILTERS = {"safe", "safeseq", "pprint"}

register = Library()
register.tags.update({k: v for k, v in defaulttags.register.tags.items() if k in ALLOWED_TAGS})
register.filters.update({k: v for k, v in defaultfilters.register.filters.items()
                         if k not in BLOCKED_FILTERS})

# Padding filters build a string as wide as their argument: `center:999999999` would take
# gigabytes per render (preview, every message of a broadcast). Bound the width.
MAX_PAD_WIDTH = 1000


def _bounded_pad(name: str):
    @register.filter(name=name, is_safe=True)
    @defaultfilters.stringfilter
    def pad(value, arg):
        return getattr(value, name)(min(int(arg), MAX_PAD_WIDTH))

    return pad


for _name in ("center", "ljust", "rjust"):
    _bounded_pad(_name)


# The same for the other filters whose argument sets an output size: `floatformat:99999999`
# writes that many decimals, `stringformat:"099999999d"` that many zeros.
MAX_DECIMALS = 30
_NUMBER = re.compile(r"\d+")


@register.filter(is_safe=True)
def floatformat(value, arg=-1):
    def bounded(match: re.Match) -> str:
        return str(min(int(match.group()), MAX_DECIMALS))

    return defaultfilters.floatformat(value, _NUMBER.sub(bounded, str(arg), count=1))


@register.filter(is_safe=True)
def stringformat(value, arg):
    if any(int(n) > MAX_PAD_WIDTH for n in _NUMBER.findall(str(arg))):
        return ""  # as Django's filter answers a format it cannot apply
    return defaultfilters.stringformat(value, arg)


# Nested loops multiply: three `for`s over a 1,000-character `make_list` are a billion steps
# per message. Every loop's length counts against one budget per render.
MAX_LOOP_STEPS = 10_000
_STEPS = "clm_sandbox_loop_steps"


class LoopBudgetExceeded(Exception):
    """Raised when a template's loops run more steps than MAX_LOOP_STEPS in one render."""


class _CountedSequence:
    """The loop's sequence expression; resolving it spends its length from the budget."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def resolve(self, context, ignore_failures: bool = False):
        values = self.inner.resolve(context, ignore_failures=ignore_failures)
        if values is None:
            return values
        if not hasattr(values, "__len__"):
            values = list(itertools.islice(values, MAX_LOOP_STEPS + 1))
        # The outermost render context: the budget is per render, not per loop.
        budget = context.render_context.dicts[0]
        budget[_STEPS] = budget.get(_STEPS, 0) + len(values)
        if budget[_STEPS] > MAX_LOOP_STEPS:
            raise LoopBudgetExceeded(f"its loops take more than {MAX_LOOP_STEPS:,} steps")
        return values


@register.tag("for")
def bounded_for(parser, token):
    node = defaulttags.do_for(parser, token)
    node.sequence = _CountedSequence(node.sequence)
    return node
