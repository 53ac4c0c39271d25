"""Every write of the lifecycle: manual moves, stage and rule definitions, engine runs.

Manual moves are inputs of the engine (ManualMove rows), so a replay keeps them; the engine
writes the history row, Contact.stage and the `stage.changed` event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from clm.core.errors import Conflict, PermissionDenied, ValidationFailed
from clm.customers.models import Contact
from clm.lifecycle import engine, marks, rollup
from clm.lifecycle.conf import setting
from clm.lifecycle.fold import ENGINE_KINDS, INACTIVE_KIND
from clm.lifecycle.models import ActorType, ManualMove, Rule, Stage, StageGroup
from clm.lifecycle.rules import validate_conditions

MOVE_PERMISSION = "lifecycle.move_stage"
REASON_MAX = 500


def can_move(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm(MOVE_PERMISSION))


def _check_move(*, to_stage: str, reason: str, actor) -> str:
    if not can_move(actor):
        raise PermissionDenied("You may not move contacts between stages.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say why the contact moves.", field="reason", code="required")
    if len(reason) > REASON_MAX:
        raise ValidationFailed(f"A reason is at most {REASON_MAX} characters.", field="reason")
    if not Stage.objects.filter(key=to_stage).exists():
        raise ValidationFailed(f"Unknown stage '{to_stage}'.", field="to_stage",
                               code="unknown_stage")
    return reason


@transaction.atomic
def stage_move(*, contact: Contact, to_stage: str, reason: str, actor, via: str = "ui",
               at: datetime | None = None) -> ManualMove:
    """Move one contact to `to_stage` by hand (backwards allowed); a reason is required.

    Requires the lifecycle.move_stage permission; the caller has checked the contact is
    visible to `actor`. `at` backdates the move (imports, tests); default now.
    """
    reason = _check_move(to_stage=to_stage, reason=reason, actor=actor)
    current = Contact.objects.filter(pk=contact.pk).values_list("stage", flat=True).first()
    if current == to_stage:
        raise ValidationFailed("The contact is already in this stage.", field="to_stage",
                               code="same_stage")
    move = ManualMove.objects.create(
        contact=contact, to_stage=to_stage, at=at or timezone.now(), reason=reason,
        actor_type=ActorType.API if via == "api" else ActorType.USER, actor=actor)
    engine.manual_moves_apply([move])
    contact.refresh_from_db(fields=["stage"])
    return move


@transaction.atomic
def stages_move_bulk(*, contacts: Sequence[Contact], to_stage: str, reason: str, actor,
                     via: str = "ui") -> int:
    """Move many contacts to `to_stage` with one reason; contacts already there are skipped.

    Returns how many moved. At most CLM_LIFECYCLE_BULK_MAX contacts per call.
    """
    reason = _check_move(to_stage=to_stage, reason=reason, actor=actor)
    limit = int(setting("CLM_LIFECYCLE_BULK_MAX"))
    if len(contacts) > limit:
        raise ValidationFailed(f"At most {limit} contacts per bulk move.", field="contact_ids",
                               code="too_many")
    ids = {c.pk for c in contacts}
    current = dict(Contact.objects.filter(pk__in=ids).values_list("pk", "stage"))
    now = timezone.now()
    actor_type = ActorType.API if via == "api" else ActorType.USER
    moves = ManualMove.objects.bulk_create([
        ManualMove(contact_id=cid, to_stage=to_stage, at=now, reason=reason,
                   actor_type=actor_type, actor=actor)
        for cid in sorted(current) if current[cid] != to_stage])
    if moves and any(m.pk is None for m in moves):  # backends without RETURNING
        moves = list(ManualMove.objects.filter(contact_id__in=ids, at=now, to_stage=to_stage))
    engine.manual_moves_apply(moves)
    return len(moves)


def events_process(*, event_ids: list[int]) -> engine.Stats:
    """Run committed events through the rules (idempotent; see clm.lifecycle.engine)."""
    return engine.events_apply(event_ids)


def inactivity_churn_apply(*, batch: int = 5000) -> int:
    """Churn the contacts whose inactivity deadline has passed; returns contacts examined."""
    total = 0
    while True:
        ids = engine.due_contact_ids(limit=batch)
        if not ids:
            return total
        engine.contacts_advance(ids)
        total += len(ids)
        if len(ids) < batch:
            return total


def lifecycle_rebuild(*, progress=None) -> engine.Stats:
    """Replay all events and manual moves and rebuild every stage and history row."""
    return engine.rebuild_all(progress=progress)


# ---------------------------------------------------------------------------------------
# Stage and rule definitions
# ---------------------------------------------------------------------------------------

def _clean_stage(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "label" in data or not partial:
        label = str(data.get("label") or "").strip()
        if not label or len(label) > 64:
            raise ValidationFailed("A stage needs a label (at most 64 characters).",
                                   field="label", code="required")
        fields["label"] = label
    if "order" in data or not partial:
        try:
            order = int(data.get("order"))
        except (TypeError, ValueError):
            raise ValidationFailed("Order is a whole number.", field="order") from None
        if not 0 <= order <= 32767:
            raise ValidationFailed("Order is between 0 and 32767.", field="order")
        fields["order"] = order
    if "group" in data or not partial:
        group = data.get("group")
        if group not in StageGroup.values:
            raise ValidationFailed(f"Group is one of {', '.join(StageGroup.values)}.",
                                   field="group")
        fields["group"] = group
    return fields


def funnel_marks_recompute(*, force: bool = False) -> int:
    """Recompute StageChange.advance_s for the whole history with the current stage order.

    Needed after stages are reordered or regrouped (the funnel reads exactly, but slowly,
    meanwhile). Skipped when the column is already by the current order, unless `force`.
    Returns the rows changed.
    """
    if not force and marks.is_current(marks.current_ranking(), marks.states()):
        return 0
    return marks.recompute()


def funnel_rollup_refresh() -> int:
    """Rebuild the by-source funnel rollup (and advance_s first, if stages were reordered)."""
    return rollup.refresh()


def _after_stage_edit() -> None:
    """A stage's order or group may have changed the funnel's ranking: recompute in the
    background once committed (the ranking check makes it cheap to skip when unchanged)."""
    from clm.lifecycle.tasks import lifecycle_funnel_marks_recompute

    transaction.on_commit(lifecycle_funnel_marks_recompute.enqueue)


@transaction.atomic
def stage_create(*, data: dict[str, Any]) -> Stage:
    """Add a stage. Its key (a slug) never changes afterwards."""
    key = str(data.get("key") or "").strip().lower()
    if not key or len(key) > 32 or not key.replace("_", "").replace("-", "").isalnum():
        raise ValidationFailed("A key is 1 to 32 letters, digits, - or _.", field="key",
                               code="required")
    fields = _clean_stage(data, partial=False)
    try:
        with transaction.atomic():
            stage = Stage.objects.create(key=key, **fields)
    except IntegrityError:
        raise Conflict("A stage with this key exists.", field="key", code="duplicate") from None
    _after_stage_edit()
    return stage


@transaction.atomic
def stage_update(*, stage: Stage, data: dict[str, Any]) -> Stage:
    """Change a stage's label, order or group (not its key)."""
    if "key" in data and data["key"] != stage.key:
        raise ValidationFailed("A stage's key cannot change.", field="key", code="immutable")
    for name, value in _clean_stage(data, partial=True).items():
        setattr(stage, name, value)
    stage.save()
    _after_stage_edit()
    return stage


def _clean_rule(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "name" in data or not partial:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 120:
            raise ValidationFailed("A rule needs a name (at most 120 characters).",
                                   field="name", code="required")
        fields["name"] = name
    if "event_kind" in data or not partial:
        kind = str(data.get("event_kind") or "").strip()
        if not kind or len(kind) > 64:
            raise ValidationFailed("A rule needs an event kind.", field="event_kind",
                                   code="required")
        if kind in ENGINE_KINDS and kind != INACTIVE_KIND:
            raise ValidationFailed("The engine's own events cannot trigger rules.",
                                   field="event_kind")
        fields["event_kind"] = kind
    if "target_stage" in data or not partial:
        target = data.get("target_stage")
        if not Stage.objects.filter(key=target).exists():
            raise ValidationFailed(f"Unknown stage '{target}'.", field="target_stage",
                                   code="unknown_stage")
        fields["target_stage_id"] = target
    if "conditions" in data:
        fields["conditions"] = validate_conditions(data["conditions"], field_name="conditions")
    if "contact_conditions" in data:
        fields["contact_conditions"] = validate_conditions(
            data["contact_conditions"], field_name="contact_conditions", contact=True)
    if "priority" in data:
        try:
            fields["priority"] = int(data["priority"])
        except (TypeError, ValueError):
            raise ValidationFailed("Priority is a whole number.", field="priority") from None
    for flag in ("forward_only", "is_loop", "active"):
        if flag in data:
            fields[flag] = bool(data[flag])
    return fields


@transaction.atomic
def rule_create(*, data: dict[str, Any]) -> Rule:
    """Add a rule; it applies to events processed from now on (rebuild to apply it to the past)."""
    return Rule.objects.create(**_clean_rule(data, partial=False))


@transaction.atomic
def rule_update(*, rule: Rule, data: dict[str, Any]) -> Rule:
    for name, value in _clean_rule(data, partial=True).items():
        setattr(rule, name, value)
    rule.save()
    return rule
