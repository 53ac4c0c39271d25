"""Segment definitions: strict validation, and compilation to one Django Q over Contact.

A definition is a group: {"op": "and" | "or", "conditions": [...]}; each condition is a
nested group or one of:

    {"type": "property", "field": F, "op": OP, "value": V}
        F: a contact field (country, region, city, age_band, income_band, source, job_title,
           created_at, last_activity_at, date_of_birth), "tags" / "interests", a company
           field ("company.industry", "company.employee_band", "company.revenue_band",
           "company.country", "company.region", "company.city", "company.name"), or a
           custom contact property "properties.<key>" (a PropertyDefinition).
        OP: eq, ne, in, not_in, contains, gt, gte, lt, lte, is_set, is_not_set (as the
           field's type allows).
    {"type": "stage", "op": "in" | "not_in", "value": [stage keys]}
    {"type": "event", "kind": K, "op": "did", "count": N, "days": D}   at least N K-events
    {"type": "event", "kind": K, "op": "did_not", "days": D}          no K-event
    {"type": "no_purchase", "days": D}     no Transaction and no order.completed event
    {"type": "rfm_segment", "op": "in" | "not_in", "value": [names]}
    {"type": "clv_decile" | "p_alive" | "health", "min": x, "max": y}  inclusive, either
                                                                        bound optional

Windows are "the last D days" ending now. Everything compiles to SQL (joins, EXISTS with
OuterRef, IN subqueries); nothing loops over contacts in Python, and the same definition
runs on SQLite and PostgreSQL. Invalid input raises ValidationFailed whose `field` is the
path of the fault inside the definition, e.g. "conditions[2].op".

Counters (BehaviourCounter, refreshed by the segments job) may stand in for the event table.
In an AND group that has a "did" condition read from counters, the sibling conditions the
counter rows carry a copy of are folded into that one counter subquery, so the database
reads a single index range instead of looking up a contact and its score per counter row:
  - score ranges (p_alive, clv_decile, health) are *replaced* by the copy, but only while the
    copy is of the latest finished analytics refresh (else they join ContactScore as usual);
  - country eq / in is *added* to the counter subquery and still tested on the contact, so
    the group never admits a contact whose country no longer matches; one who moved into
    the countries since the counters' refresh counts from the next refresh on (as their
    behaviour does).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from clm.core.errors import ValidationFailed

MAX_DEPTH = 4
MAX_CONDITIONS = 50
MAX_LIST = 1000
MAX_TEXT = 200
MAX_DAYS = 3650
MAX_COUNT = 100_000
PURCHASE_KIND = "order.completed"
KIND_RE = re.compile(r"^[a-z0-9_][a-z0-9_.:-]{0,63}$")
KEY_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")

TEXT_OPS = {"eq", "ne", "in", "not_in", "contains", "is_set", "is_not_set"}
ORDER_OPS = {"gt", "gte", "lt", "lte"}
DATE_OPS = ORDER_OPS | {"is_set", "is_not_set"}
NUMBER_OPS = {"eq", "ne", "in", "not_in", "is_set", "is_not_set"} | ORDER_OPS
BOOLEAN_OPS = {"eq", "ne", "is_set", "is_not_set"}
TAG_OPS = {"eq", "ne", "in", "not_in", "contains", "is_set", "is_not_set"}
NO_VALUE_OPS = {"is_set", "is_not_set"}

# name -> (ORM path, type, nullable join). Text columns are NOT NULL with '' for "not set".
PROPERTY_FIELDS: dict[str, tuple[str, str]] = {
    "country": ("country", "country"),
    "region": ("region", "text"),
    "city": ("city", "text"),
    "age_band": ("age_band", "text"),
    "income_band": ("income_band", "text"),
    "source": ("source", "text"),
    "job_title": ("job_title", "text"),
    "created_at": ("created_at", "datetime"),
    "last_activity_at": ("last_activity_at", "datetime"),
    "date_of_birth": ("date_of_birth", "date"),
    "tags": ("tags", "tags"),
    "interests": ("tags", "tags"),
    "company.industry": ("company__industry", "text"),
    "company.employee_band": ("company__employee_band", "text"),
    "company.revenue_band": ("company__revenue_band", "text"),
    "company.country": ("company__country", "country"),
    "company.region": ("company__region", "text"),
    "company.city": ("company__city", "text"),
    "company.name": ("company__name", "text"),
}
OPS_BY_TYPE = {"text": TEXT_OPS, "country": TEXT_OPS, "datetime": DATE_OPS, "date": DATE_OPS,
               "tags": TAG_OPS, "number": NUMBER_OPS, "boolean": BOOLEAN_OPS,
               "choice": TEXT_OPS, "ptext": TEXT_OPS, "pdate": DATE_OPS}
# Score conditions: type -> (ORM path, lowest, highest).
RANGES: dict[str, tuple[str, float, float]] = {
    "clv_decile": ("score__clv_decile", 1, 10),
    "p_alive": ("score__p_alive", 0.0, 1.0),
    "health": ("score__health_score", 0.0, 100.0),
}
CONDITION_TYPES = {"property", "stage", "event", "no_purchase", "rfm_segment", *RANGES}
KEYS_BY_TYPE = {
    "property": {"type", "field", "op", "value"},
    "stage": {"type", "op", "value"},
    "event": {"type", "kind", "op", "count", "days"},
    "no_purchase": {"type", "days"},
    "rfm_segment": {"type", "op", "value"},
    **{t: {"type", "min", "max"} for t in RANGES},
}


def _fail(path: str, message: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}" if path else message, field=path or None,
                            code=code)


@dataclass
class Leaf:
    """A compiled node, and what an AND group may fold into a counter subquery."""

    q: Q
    # (BehaviourWindow id, at least N) of a "did" condition read from counters.
    counter: tuple[int, int] | None = None
    # The same test on BehaviourCounter's copied columns.
    snapshot: Q | None = None
    # True: the copy equals the source while the window's scores are current, so the
    # snapshot replaces `q`. False: the snapshot only narrows, `q` is still tested.
    exact: bool = False


def latest_score_refresh() -> int | None:
    """Id of the analytics refresh whose ContactScore rows are current (None: none yet)."""
    from clm.analytics.models import RefreshRun

    return (RefreshRun.objects.filter(status=RefreshRun.Status.DONE)
            .order_by("-finished_at", "-pk").values_list("pk", flat=True).first())


_UNKNOWN = object()


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass
class Compiler:
    """Validates and compiles one definition. `windows` maps (kind, days) to the id of a
    fresh BehaviourWindow whose counters may replace the live event subquery;
    `window_scores` maps such a window id to the analytics refresh its score copies are of."""

    now: datetime = field(default_factory=timezone.now)
    windows: dict[tuple[str, int], int] = field(default_factory=dict)
    window_scores: dict[int, int | None] = field(default_factory=dict)
    stages: set[str] | None = None
    property_types: dict[str, str] | None = None
    conditions_seen: int = 0
    behaviours: set[tuple[str, int]] = field(default_factory=set)
    _latest_scores: Any = _UNKNOWN

    # --- entry -------------------------------------------------------------------------

    def group(self, node: Any, path: str = "", depth: int = 0) -> Q:
        if not isinstance(node, dict):
            raise _fail(path, "A group must be an object {op, conditions}.")
        extra = set(node) - {"op", "conditions", "type"}
        if extra:
            raise _fail(_join(path, sorted(extra)[0]), "Unknown key.", "unknown_field")
        if node.get("type", "group") != "group":
            raise _fail(_join(path, "type"), "A group's type is 'group'.")
        op = node.get("op")
        if op not in ("and", "or"):
            raise _fail(_join(path, "op"), "Must be 'and' or 'or'.")
        conditions = node.get("conditions")
        if not isinstance(conditions, list):
            raise _fail(_join(path, "conditions"), "Must be a list.", "required")
        if depth >= MAX_DEPTH:
            raise _fail(path, f"Groups nest at most {MAX_DEPTH} deep.")
        leaves = [self.node(child, _join(_join(path, "conditions"), index), depth + 1)
                  for index, child in enumerate(conditions)]
        if not conditions:
            # An empty AND matches everyone; an empty OR matches no one.
            return Q() if op == "and" else Q(pk__in=[])
        if op == "and":
            leaves = self._fold(leaves)
        result = Q()
        for leaf in leaves:
            result = (result & leaf.q) if op == "and" else (result | leaf.q)
        return result

    def _fold(self, leaves: list[Leaf]) -> list[Leaf]:
        """Fold the snapshot tests of an AND group's leaves into its first counter "did"."""
        from clm.segments.models import BehaviourCounter

        driver = next((leaf for leaf in leaves if leaf.counter), None)
        if driver is None or not any(leaf.snapshot is not None for leaf in leaves):
            return leaves
        window, count = driver.counter
        filters = [Q(window_id=window, count__gte=count)]
        kept = []
        for leaf in leaves:
            if leaf.snapshot is None or (leaf.exact and not self._scores_current(window)):
                kept.append(leaf)
                continue
            filters.append(leaf.snapshot)
            if not leaf.exact:
                kept.append(leaf)  # a narrowing copy: the live test stays
        # (An exact copy stands for the score itself: ContactScore need not be joined.)
        driver.q = Q(pk__in=BehaviourCounter.objects.filter(*filters).values("contact_id"))
        return kept

    def _scores_current(self, window: int) -> bool:
        if self._latest_scores is _UNKNOWN:
            self._latest_scores = latest_score_refresh()
        return window in self.window_scores and \
            self.window_scores[window] == self._latest_scores

    def node(self, node: Any, path: str, depth: int) -> Leaf:
        if not isinstance(node, dict):
            raise _fail(path, "A condition must be an object.")
        if "conditions" in node or node.get("type") == "group":
            return Leaf(self.group(node, path, depth))
        self.conditions_seen += 1
        if self.conditions_seen > MAX_CONDITIONS:
            raise _fail(path, f"A segment has at most {MAX_CONDITIONS} conditions.", "too_many")
        kind = node.get("type")
        if kind not in CONDITION_TYPES:
            raise _fail(_join(path, "type"), "Unknown condition type. One of: "
                        + ", ".join(sorted(CONDITION_TYPES | {"group"})) + ".")
        extra = set(node) - KEYS_BY_TYPE[kind]
        if extra:
            raise _fail(_join(path, sorted(extra)[0]), "Unknown key.", "unknown_field")
        if kind in RANGES:
            return self.range(node, path, kind)
        compiled = getattr(self, f"c_{kind}")(node, path)
        return compiled if isinstance(compiled, Leaf) else Leaf(compiled)

    # --- value helpers -----------------------------------------------------------------

    @staticmethod
    def text(value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _fail(path, "Must be text.")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(path, "Must be a finite number.")
        text = str(value).strip()
        if "\x00" in text:
            raise _fail(path, "Must not contain NUL characters.")
        if not text or len(text) > MAX_TEXT:
            raise _fail(path, f"Must be 1 to {MAX_TEXT} characters.")
        return text

    @staticmethod
    def number(value: Any, path: str, low: float | None = None,
               high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise _fail(path, "Must be a number.")
        if (low is not None and value < low) or (high is not None and value > high):
            raise _fail(path, f"Must be between {low:g} and {high:g}.")
        return value

    @staticmethod
    def integer(value: Any, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(path, f"Must be a whole number from {low} to {high}.")
        return value

    def moment(self, value: Any, path: str, as_datetime: bool) -> date | datetime:
        if not isinstance(value, str):
            raise _fail(path, "Must be an ISO date (YYYY-MM-DD) or date-time.")
        try:
            parsed_dt = parse_datetime(value)
            parsed_d = None if parsed_dt else parse_date(value)
        except ValueError:
            parsed_dt = parsed_d = None
        if parsed_dt is None and parsed_d is None:
            raise _fail(path, "Must be an ISO date (YYYY-MM-DD) or date-time.")
        if not as_datetime:
            return parsed_d or parsed_dt.date()
        if parsed_dt is None:
            parsed_dt = datetime.combine(parsed_d, time.min)
        if timezone.is_naive(parsed_dt):
            parsed_dt = timezone.make_aware(parsed_dt)
        return parsed_dt

    def values(self, node: dict, path: str, convert) -> list:
        value = node.get("value")
        vpath = _join(path, "value")
        if not isinstance(value, list) or not value:
            raise _fail(vpath, "Must be a non-empty list.", "required")
        if len(value) > MAX_LIST:
            raise _fail(vpath, f"At most {MAX_LIST} values.", "too_many")
        return [convert(v, _join(vpath, i)) for i, v in enumerate(value)]

    def op(self, node: dict, path: str, allowed: set[str]) -> str:
        op = node.get("op")
        if op not in allowed:
            raise _fail(_join(path, "op"), "Must be one of: " + ", ".join(sorted(allowed)) + ".")
        return op

    # --- conditions --------------------------------------------------------------------

    def _property_type(self, key: str, path: str) -> str:
        if self.property_types is None:
            from clm.customers.models import ObjectType, PropertyDefinition

            self.property_types = dict(PropertyDefinition.objects.filter(
                object_type=ObjectType.CONTACT).values_list("key", "type"))
        if not KEY_RE.match(key) or key not in self.property_types:
            raise _fail(path, f"There is no contact property '{key[:64]}'.", "unknown_field")
        return {"text": "ptext", "date": "pdate"}.get(self.property_types[key],
                                                      self.property_types[key])

    def c_property(self, node: dict, path: str) -> Q | Leaf:
        name = node.get("field")
        fpath = _join(path, "field")
        if not isinstance(name, str):
            raise _fail(fpath, "Must name a field.", "required")
        if name.startswith("properties."):
            key = name.removeprefix("properties.")
            ftype = self._property_type(key, fpath)
            orm = f"properties__{key}"
        elif name in PROPERTY_FIELDS:
            orm, ftype = PROPERTY_FIELDS[name]
        else:
            raise _fail(fpath, f"Unknown field '{name[:64]}'.", "unknown_field")
        op = self.op(node, path, OPS_BY_TYPE[ftype])
        vpath = _join(path, "value")
        if op in NO_VALUE_OPS:
            if node.get("value") is not None:
                raise _fail(vpath, f"'{op}' takes no value.")
            is_set = self._is_set(orm, ftype)
            return is_set if op == "is_set" else ~is_set
        if "value" not in node:
            raise _fail(vpath, "A value is required.", "required")
        convert = self._converter(ftype, op)
        if op in ("in", "not_in"):
            values = self.values(node, path, convert)
            q = self._match_any(orm, ftype, values)
            if op == "in" and name == "country":
                return Leaf(q, snapshot=Q(country__in=values))
            return q if op == "in" else ~q
        value = convert(node["value"], vpath)
        if op == "eq" and name == "country":
            return Leaf(Q(country=value), snapshot=Q(country=value))
        if ftype == "tags":
            if op == "contains":
                return self._has_tag(name__contains=value)
            q = self._has_tag(name=value)
            return q if op == "eq" else ~q
        if op == "contains":
            return Q(**{f"{orm}__icontains": value})
        if op in ("eq", "ne"):
            q = Q(**{orm: value})
            return q if op == "eq" else ~q
        return Q(**{f"{orm}__{op}": value})

    def _converter(self, ftype: str, op: str):
        if ftype == "country":
            return lambda v, p: self.text(v, p).upper()
        if ftype == "tags":
            return lambda v, p: self.text(v, p).lower()
        if ftype in ("datetime", "date"):
            return lambda v, p: self.moment(v, p, as_datetime=ftype == "datetime")
        if ftype == "pdate":
            # Custom dates are stored as ISO text, which sorts like the dates themselves.
            return lambda v, p: self.moment(v, p, as_datetime=False).isoformat()
        if ftype == "number":
            return lambda v, p: self.number(v, p)
        if ftype == "boolean":
            def boolean(v, p):
                if not isinstance(v, bool):
                    raise _fail(p, "Must be true or false.")
                return v
            return boolean
        return self.text

    @staticmethod
    def _has_tag(**tag_lookups: Any) -> Q:
        from clm.customers.models import Contact

        lookups = {f"tag__{k}": v for k, v in tag_lookups.items()}
        return Q(Exists(Contact.tags.through.objects.filter(contact_id=OuterRef("pk"),
                                                            **lookups)))

    def _match_any(self, orm: str, ftype: str, values: list) -> Q:
        if ftype == "tags":
            return self._has_tag(name__in=values)
        return Q(**{f"{orm}__in": values})

    @staticmethod
    def _is_set(orm: str, ftype: str) -> Q:
        if ftype == "tags":
            from clm.customers.models import Contact

            return Q(Exists(Contact.tags.through.objects.filter(contact_id=OuterRef("pk"))))
        if orm.startswith("properties__"):
            return Q(properties__has_key=orm.removeprefix("properties__"))
        if ftype in ("datetime", "date"):
            return Q(**{f"{orm}__isnull": False})
        q = Q(**{f"{orm}__gt": ""})
        if orm.startswith("company__"):
            q &= Q(company__isnull=False)
        return q

    def c_stage(self, node: dict, path: str) -> Q:
        op = self.op(node, path, {"in", "not_in"})
        values = self.values(node, path, self.text)
        if self.stages is None:
            from clm.lifecycle.models import Stage

            self.stages = set(Stage.objects.values_list("key", flat=True))
        for i, value in enumerate(values):
            if self.stages and value not in self.stages:
                raise _fail(_join(_join(path, "value"), i), f"Unknown stage '{value[:32]}'.")
        q = Q(stage__in=values)
        return q if op == "in" else ~q

    def _days(self, node: dict, path: str) -> int:
        if "days" not in node:
            raise _fail(_join(path, "days"), "Required.", "required")
        return self.integer(node["days"], _join(path, "days"), 1, MAX_DAYS)

    def c_event(self, node: dict, path: str) -> Q | Leaf:
        from clm.segments.models import BehaviourCounter
        from clm.timeline.models import Event

        kind = node.get("kind")
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            raise _fail(_join(path, "kind"), "Must be an event kind such as 'order.completed'.",
                        "required" if kind is None else "invalid")
        op = self.op(node, path, {"did", "did_not"})
        days = self._days(node, path)
        if op == "did":
            count = self.integer(node.get("count", 1), _join(path, "count"), 1, MAX_COUNT)
        elif "count" in node:
            raise _fail(_join(path, "count"), "'did_not' takes no count.")
        else:
            count = 1
        self.behaviours.add((kind, days))
        window = self.windows.get((kind, days))
        if window is not None:
            ids = BehaviourCounter.objects.filter(window_id=window, count__gte=count) \
                .values("contact_id")
            q = Q(pk__in=ids)
            if op == "did":
                return Leaf(q, counter=(window, count))
        else:
            since = self.now - timedelta(days=days)
            events = Event.objects.filter(contact_id=OuterRef("pk"), kind=kind,
                                          occurred_at__gt=since, occurred_at__lte=self.now)
            # "At least N": an N-th matching row exists (EXISTS … LIMIT 1 OFFSET N-1), which
            # stops at the N-th row of the (contact, kind, time) index instead of counting all.
            q = Q(Exists(events.order_by()[count - 1:count]))
        return q if op == "did" else ~q

    def c_no_purchase(self, node: dict, path: str) -> Q:
        from clm.analytics.models import Transaction
        from clm.timeline.models import Event

        days = self._days(node, path)
        since = self.now - timedelta(days=days)
        bought = Transaction.objects.filter(contact_id=OuterRef("pk"), occurred_at__gt=since,
                                            occurred_at__lte=self.now)
        ordered = Event.objects.filter(contact_id=OuterRef("pk"), kind=PURCHASE_KIND,
                                       occurred_at__gt=since, occurred_at__lte=self.now)
        return ~Q(Exists(bought)) & ~Q(Exists(ordered))

    def c_rfm_segment(self, node: dict, path: str) -> Q:
        from clm.analytics.rfm import SEGMENTS

        op = self.op(node, path, {"in", "not_in"})
        values = self.values(node, path, self.text)
        for i, value in enumerate(values):
            if value not in SEGMENTS:
                raise _fail(_join(_join(path, "value"), i), "Unknown RFM segment. One of: "
                            + ", ".join(SEGMENTS) + ".")
        q = Q(score__rfm_segment__in=values)
        return q if op == "in" else ~q

    def range(self, node: dict, path: str, kind: str) -> Leaf:
        orm, low, high = RANGES[kind]
        bounds = {}
        for key in ("min", "max"):
            if node.get(key) is not None:
                if kind == "clv_decile":
                    bounds[key] = self.integer(node[key], _join(path, key), int(low), int(high))
                else:
                    bounds[key] = self.number(node[key], _join(path, key), low, high)
        if not bounds:
            raise _fail(_join(path, "min"), "Give min, max or both.", "required")
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise _fail(_join(path, "max"), "Must not be below min.")
        q, copy = Q(), Q()
        column = orm.removeprefix("score__")  # BehaviourCounter keeps a copy of the score
        for key, op in (("min", "gte"), ("max", "lte")):
            if key in bounds:
                q &= _score_test(column, op, bounds[key])
                copy &= Q(**{f"{column}__{op}": bounds[key]})
        return Leaf(q, snapshot=copy, exact=True)


def _score_test(column: str, op: str, value: float) -> Q:
    """The contact's score `column` `op` ("gte" or "lte") `value`; a derived score (health)
    is computed from the stored columns it reads (clm.analytics.derived)."""
    from clm.analytics.derived import NAMES, Derived

    if column not in NAMES:
        return Q(**{f"score__{column}__{op}": value})
    lookup = GreaterThanOrEqual if op == "gte" else LessThanOrEqual
    return Q(lookup(Derived(column, "score__"), value))


def _fresh_window_rows(now: datetime) -> list[tuple[int, str, int, int | None]]:
    from clm.segments.models import BehaviourWindow

    max_age = timedelta(seconds=getattr(settings, "CLM_SEGMENT_COUNTER_MAX_AGE", 3600))
    return list(BehaviourWindow.objects.filter(refreshed_at__gte=now - max_age).values_list(
        "pk", "kind", "days", "scores_refresh_id"))


def fresh_windows(now: datetime | None = None) -> dict[tuple[str, int], int]:
    """(kind, days) -> BehaviourWindow id for counters refreshed within the allowed age."""
    return {(k, d): pk for pk, k, d, _ in _fresh_window_rows(now or timezone.now())}


def validate(definition: Any) -> set[tuple[str, int]]:
    """Raise ValidationFailed (field = path in the definition) unless `definition` is valid.

    Returns the (event kind, days) pairs its behaviour conditions use.
    """
    compiler = Compiler()
    compiler.group(definition)
    return compiler.behaviours


def compile_definition(definition: Any, *, now: datetime | None = None,
                       use_counters: bool = True) -> Q:
    """The Q over Contact that admits exactly the contacts `definition` matches.

    With `use_counters`, behaviour conditions whose (kind, days) counters are fresh read the
    BehaviourCounter table (counts as of its refresh, at most CLM_SEGMENT_COUNTER_MAX_AGE
    old) instead of the event table, and their AND groups fold country and score tests into
    the counter read (see the module docstring); otherwise they read events up to `now`.
    """
    now = now or timezone.now()
    rows = _fresh_window_rows(now) if use_counters else []
    return Compiler(now=now, windows={(k, d): pk for pk, k, d, _ in rows},
                    window_scores={pk: s for pk, _, _, s in rows}).group(definition)
