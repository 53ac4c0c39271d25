"""The condition language of rules, and rules compiled for fast evaluation.

A condition is {"field": ..., "op": ..., "value": ...}; a list of them must all hold.
- field: a dotted path into the event's properties (`form_type`, `changes.properties.lead_score.1`;
  a key that itself contains dots is found too), or for contact conditions a contact field
  (`stage`, `life`, `source`, `country`, `owner_id`, `company_id`, …) or `properties.<key>`.
- op: eq, ne, gt, gte, lt, lte, in, exists. `in` takes a list; `exists` a boolean.
  Comparisons of a number with a numeric string compare numbers; a missing field fails every
  op except `ne` and `exists: false`.
- value: JSON, or {"setting": "CLM_…"} to read a setting when the rules are loaded
  (the seeded MQL rule uses CLM_MQL_SCORE_THRESHOLD).

`stage` and `life` in contact conditions are the engine's own state at that point of the
replay; other contact fields are the contact's current values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clm.core.errors import ValidationFailed
from clm.lifecycle.conf import has_setting, setting

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")
CONTACT_FIELDS = {"stage", "life", "source", "country", "region", "city", "owner_id",
                  "company_id", "age_band", "income_band", "job_title", "email"}
# Contact fields the engine supplies itself (its replay state), not read from the row.
STATE_FIELDS = {"stage", "life"}
_MISSING = object()


def _resolve(obj: Any, parts: list[str]) -> Any:
    """Walk a dotted path; at each level the longest key that exists wins."""
    if not parts:
        return obj
    if isinstance(obj, list):
        index = parts[0]
        if index.isdigit() and int(index) < len(obj):
            return _resolve(obj[int(index)], parts[1:])
        return _MISSING
    if not isinstance(obj, dict):
        return _MISSING
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in obj:
            found = _resolve(obj[key], parts[i:])
            if found is not _MISSING:
                return found
    return _MISSING


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return (actual is not _MISSING and actual is not None) == bool(expected)
    if actual is _MISSING:
        return op == "ne"
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    a, b = _number(actual), _number(expected)
    try:
        if op == "gt":
            return a > b
        if op == "gte":
            return a >= b
        if op == "lt":
            return a < b
        return a <= b  # lte
    except TypeError:
        return False


def _equal(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    if (isinstance(expected, int | float) and not isinstance(expected, bool)) or \
            (isinstance(actual, int | float) and not isinstance(actual, bool)):
        return _number(actual) == _number(expected)
    return False


def _resolve_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"setting"}:
        return setting(str(value["setting"]))
    return value


def validate_conditions(conditions: Any, *, field_name: str, contact: bool = False) -> list[dict]:
    """Check a condition list; returns it normalised or raises ValidationFailed naming `field_name`."""
    if conditions in (None, ""):
        return []
    if not isinstance(conditions, list):
        raise ValidationFailed("Conditions are a list of {field, op, value}.", field=field_name)
    cleaned = []
    for i, cond in enumerate(conditions):
        where = f"{field_name}[{i}]"
        if not isinstance(cond, dict) or not isinstance(cond.get("field"), str) \
                or not cond["field"].strip():
            raise ValidationFailed("Each condition needs a field.", field=where)
        op = cond.get("op", "eq")
        if op not in OPS:
            raise ValidationFailed(f"Unknown op '{op}'; use one of {', '.join(OPS)}.", field=where)
        name = cond["field"].strip()
        if contact and name not in CONTACT_FIELDS and not name.startswith("properties."):
            raise ValidationFailed(f"Unknown contact field '{name}'.", field=where)
        value = cond.get("value")
        if isinstance(value, dict) and (
                set(value) != {"setting"} or not has_setting(str(value.get("setting")))):
            raise ValidationFailed("A value object must be {\"setting\": \"CLM_…\"}.",
                                       field=where)
        if op == "in" and not isinstance(value, list):
            raise ValidationFailed("'in' takes a list.", field=where)
        cleaned.append({"field": name, "op": op, "value": value})
    return cleaned


def _compile(conditions: list[dict]) -> list[tuple[list[str], str, Any]]:
    return [(c["field"].split("."), c.get("op", "eq"), _resolve_value(c.get("value")))
            for c in conditions]


def conditions_hold(compiled: list[tuple[list[str], str, Any]], data: Any) -> bool:
    return all(_compare(op, _resolve(data, parts), value) for parts, op, value in compiled)


def _number_class(value: Any) -> bool:
    return value.__class__ is int or value.__class__ is float


def _condition_predicate(parts: list[str], op: str, value: Any) -> Callable[[Any], bool]:
    """One condition as a function of the data, with the same result as `conditions_hold`.

    The common shapes (one top-level key; eq / ne; an order against a number) skip the
    generic walk; anything else goes through `_resolve` and `_compare`.
    """
    if len(parts) == 1:
        key = parts[0]

        def get(data: Any) -> Any:
            # A one-part path in a dict is the key itself (_resolve would find the same).
            if data.__class__ is dict:
                return data.get(key, _MISSING)
            return _resolve(data, parts)
    else:
        def get(data: Any) -> Any:
            return _resolve(data, parts)

    text = value.__class__ is str
    if op == "eq":
        def eq(data: Any) -> bool:
            actual = get(data)
            if text and actual.__class__ is str:  # two strings: plain equality
                return actual == value
            return actual == value or (actual is not _MISSING and _equal(actual, value))
        return eq
    if op == "ne":
        def ne(data: Any) -> bool:
            actual = get(data)
            if text and actual.__class__ is str:
                return actual != value
            return actual is _MISSING or not _equal(actual, value)
        return ne
    if op == "in" and isinstance(value, list) and value \
            and all(item.__class__ is str for item in value):
        members = frozenset(value)

        def among(data: Any) -> bool:
            actual = get(data)
            if actual.__class__ is str:  # a string among strings: plain membership
                return actual in members
            return _compare(op, actual, value)
        return among
    if op in ("gt", "gte", "lt", "lte") and _number_class(value):
        import operator

        compare = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
                   "lte": operator.le}[op]

        def order(data: Any) -> bool:
            actual = get(data)
            if _number_class(actual):
                return compare(actual, value)
            return _compare(op, actual, value)
        return order

    def generic(data: Any) -> bool:
        return _compare(op, get(data), value)
    return generic


def predicate(compiled: list[tuple[list[str], str, Any]]) -> Callable[[Any], bool] | None:
    """All conditions as one function (None when there are none: always true)."""
    if not compiled:
        return None
    checks = [_condition_predicate(parts, op, value) for parts, op, value in compiled]
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda data: first(data) and second(data)
    return lambda data: all(check(data) for check in checks)


@dataclass(slots=True)
class CompiledRule:
    id: int
    name: str
    event_kind: str
    target: str
    priority: int
    forward_only: bool
    is_loop: bool
    conditions: list = field(default_factory=list)
    contact_conditions: list = field(default_factory=list)
    predicate: Callable[[Any], bool] | None = None
    contact_predicate: Callable[[Any], bool] | None = None
    # Whether contact conditions read the contact row (not only the engine's stage/life).
    contact_reads_row: bool = False

    def __post_init__(self) -> None:
        self.predicate = predicate(self.conditions)
        self.contact_predicate = predicate(self.contact_conditions)
        self.contact_reads_row = any(parts[0] not in STATE_FIELDS or len(parts) > 1
                                     for parts, _op, _value in self.contact_conditions)

    def matches(self, props: Any, contact: Callable[[], dict]) -> bool:
        if self.predicate is not None and not self.predicate(props):
            return False
        return self.contact_predicate is None or self.contact_predicate(contact())


def compile_rules(rules) -> dict[str, list[CompiledRule]]:
    """Active rules grouped by event kind, each group in priority order."""
    by_kind: dict[str, list[CompiledRule]] = {}
    for rule in sorted(rules, key=lambda r: (r.priority, r.pk)):
        if not rule.active:
            continue
        by_kind.setdefault(rule.event_kind, []).append(CompiledRule(
            id=rule.pk, name=rule.name, event_kind=rule.event_kind,
            target=rule.target_stage_id, priority=rule.priority,
            forward_only=rule.forward_only, is_loop=rule.is_loop,
            conditions=_compile(rule.conditions or []),
            contact_conditions=_compile(rule.contact_conditions or [])))
    return by_kind


def contact_fields_needed(by_kind: dict[str, list[CompiledRule]]) -> set[str]:
    """Contact fields (beyond the engine's own stage/life) that some rule reads."""
    needed: set[str] = set()
    for rules in by_kind.values():
        for rule in rules:
            for parts, _op, _value in rule.contact_conditions:
                name = parts[0]
                if name not in STATE_FIELDS:
                    needed.add(name)
    return needed
