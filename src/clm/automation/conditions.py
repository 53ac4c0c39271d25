"""Conditions of workflows, in the lifecycle rules' format: a list of {field, op, value}.

- On an event (triggers, goals, wait-for): `field` is a dotted path into its properties.
- On a contact (branch steps): a contact field (`stage`, `country`, `email`, `owner_id`, …),
  `properties.<key>`, `score.<field>` (the analytics score: `health_score`, `churn_risk`,
  `predicted_clv`, `p_alive`, `rfm_segment`, …) or `tags` (with op `in`/`eq` against a tag).

Ops and comparison rules are those of clm.lifecycle.rules (eq, ne, gt, gte, lt, lte, in,
exists; numeric strings compare as numbers; a missing field fails all but ne/exists:false).
"""

from __future__ import annotations

from typing import Any

from clm.core.errors import ValidationFailed
from clm.lifecycle.rules import CONTACT_FIELDS, conditions_hold, validate_conditions

SCORE_FIELDS = ("health_score", "churn_risk", "predicted_clv", "historical_clv", "p_alive",
                "rfm_segment", "clv_decile", "purchases", "days_since_last_purchase",
                "expected_purchases", "engagement")
BRANCH_FIELDS = CONTACT_FIELDS | {"first_name", "last_name", "phone", "timezone", "tags"}
Compiled = list[tuple[list[str], str, Any]]


def validate_event_conditions(value: Any, *, field: str) -> list[dict]:
    """Conditions on an event's properties, normalised; ValidationFailed names `field`[i]."""
    cleaned = validate_conditions(value, field_name=field)
    for i, cond in enumerate(cleaned):
        if isinstance(cond["value"], dict):
            raise ValidationFailed("A value is plain JSON here, not a setting.",
                                   field=f"{field}[{i}]")
    return cleaned


def validate_contact_conditions(value: Any, *, field: str) -> list[dict]:
    """Conditions on a contact (see the module docstring for the fields admitted)."""
    cleaned = validate_event_conditions(value, field=field)
    for i, cond in enumerate(cleaned):
        name = cond["field"]
        head, _, rest = name.partition(".")
        ok = (name in BRANCH_FIELDS or (head == "properties" and rest)
              or (head == "score" and rest in SCORE_FIELDS))
        if not ok:
            raise ValidationFailed(
                f"Unknown contact field '{name}'; use a contact field, properties.<key>, "
                f"score.<{'|'.join(SCORE_FIELDS[:3])}|…> or tags.", field=f"{field}[{i}]")
    return cleaned


def compile_conditions(conditions: list[dict] | None) -> Compiled:
    return [(c["field"].split("."), c.get("op", "eq"), c.get("value")) for c in conditions or []]


def holds(compiled: Compiled, data: Any) -> bool:
    return not compiled or conditions_hold(compiled, data)


def contact_data(contact, *, needs_score: bool = False, needs_tags: bool = False) -> dict:
    """The contact as the dict branch conditions read."""
    data = {name: getattr(contact, name, None) for name in BRANCH_FIELDS if name != "tags"}
    data["properties"] = dict(contact.properties or {})
    if needs_tags:
        data["tags"] = list(contact.tags.values_list("name", flat=True))
    if needs_score:
        from clm.analytics.models import ContactScore

        score = ContactScore.objects.filter(contact_id=contact.pk).first()
        data["score"] = ({name: getattr(score, name, None) for name in SCORE_FIELDS}
                         if score else {})
    return data


def contact_holds(conditions: list[dict], contact) -> bool:
    """Whether all contact conditions hold for `contact` now."""
    compiled = compile_conditions(conditions)
    if not compiled:
        return True
    heads = {parts[0] for parts, _op, _value in compiled}
    data = contact_data(contact, needs_score="score" in heads, needs_tags="tags" in heads)
    tag_conds = [(p, op, v) for p, op, v in compiled if p == ["tags"]]
    other = [(p, op, v) for p, op, v in compiled if p != ["tags"]]
    for _parts, op, value in tag_conds:
        # "tags eq vip" / "tags in [vip, gold]": the contact has one of them; ne: has none.
        wanted = value if isinstance(value, list) else [value]
        has = any(t in data["tags"] for t in wanted)
        if op == "exists":
            has = bool(data["tags"]) == bool(value)
        elif op == "ne":
            has = not has
        if not has:
            return False
    return holds(other, data)
