"""The only tags and filters an email template may use (the sandbox's builtins).

Left out: anything that loads or includes other templates, reaches the URL map or the
request (`load`, `include`, `extends`, `url`, `csrf_token`, `querystring`), dumps internals
(`debug`, `pprint`), or turns escaping off (`autoescape`, `filter`, `safe`, `safeseq`).
"""

from __future__ import annotations

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
