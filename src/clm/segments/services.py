"""Writes of the segments app: segments, static list members, behaviour counters and the
periodic evaluation that records `segment.entered` / `segment.left` timeline events.

All membership work is set-based SQL: INSERT … SELECT from the compiled query, NOT IN
anti-joins for the differences, deletes and inserts in chunks of ids; Python touches ids only
to build the bulk rows of the timeline events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from clm.core.errors import Conflict, ValidationFailed
from clm.customers.models import Contact
from clm.segments.compiler import latest_score_refresh, validate
from clm.segments.models import BehaviourCounter, BehaviourWindow, Segment, SegmentMembership
from clm.segments.queries import segment_contact_ids, segment_q
from clm.timeline.models import Event
from clm.timeline.services import events_record_bulk

CHUNK = 5000
MAX_MANUAL_MEMBERS = 1000
ENTERED, LEFT = "segment.entered", "segment.left"


# --- segments -------------------------------------------------------------------------------

def _clean(data: dict[str, Any], segment: Segment | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if "name" in data or segment is None:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 120:
            raise ValidationFailed("A name of 1 to 120 characters is required.", field="name",
                                   code="required")
        if Segment.objects.filter(name=name).exclude(pk=getattr(segment, "pk", None)).exists():
            raise Conflict(f"A segment named '{name}' exists.", field="name", code="duplicate")
        clean["name"] = name
    if "description" in data:
        clean["description"] = str(data["description"] or "")[:500]
    if "active" in data:
        clean["active"] = bool(data["active"])
    kind = data.get("kind", segment.kind if segment else Segment.Kind.DYNAMIC)
    if kind not in Segment.Kind.values:
        raise ValidationFailed("Kind must be 'dynamic' or 'static'.", field="kind")
    if segment is not None and kind != segment.kind:
        raise ValidationFailed("A segment's kind cannot change; snapshot it instead.",
                               field="kind")
    clean["kind"] = kind
    if kind == Segment.Kind.DYNAMIC and ("definition" in data or segment is None):
        definition = data.get("definition")
        try:
            validate(definition)
        except ValidationFailed as exc:
            exc.field = f"definition.{exc.field}" if exc.field else "definition"
            raise
        clean["definition"] = definition
    elif kind == Segment.Kind.STATIC:
        if data.get("definition"):
            raise ValidationFailed("A static list has no definition.", field="definition")
        clean["definition"] = {}
    return clean


@transaction.atomic
def segment_create(*, data: dict[str, Any], actor=None) -> Segment:
    """Create a dynamic segment (validated definition) or an empty static list."""
    clean = _clean(data, None)
    now = timezone.now()
    return Segment.objects.create(**clean, created_by=actor if getattr(
        actor, "is_authenticated", False) else None, created_at=now, updated_at=now)


@transaction.atomic
def segment_update(*, segment: Segment, data: dict[str, Any], actor=None) -> Segment:
    """Change name, description, active flag or (dynamic) definition; the kind is fixed.

    A new definition keeps the stored membership, so the next evaluation records who
    entered and left because of the change.
    """
    clean = _clean(data, segment)
    for key, value in clean.items():
        setattr(segment, key, value)
    segment.updated_at = timezone.now()
    segment.save()
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, actor=None) -> None:
    SegmentMembership.objects.filter(segment=segment).delete()
    segment.delete()


def _insert_members(segment: Segment, ids_qs: QuerySet, now: datetime) -> None:
    """INSERT … SELECT the contact ids of `ids_qs` (a values("id") query) as members."""
    sql, params = ids_qs.query.sql_with_params()
    table = connection.ops.quote_name(SegmentMembership._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (segment_id, contact_id, added_at) "  # noqa: S608 - fixed names
            f"SELECT %s, sub.id, %s FROM ({sql}) sub", [segment.pk, at, *params])


@transaction.atomic
def segment_snapshot(*, segment: Segment, name: str | None = None, actor=None,
                     within: QuerySet[Contact] | None = None) -> Segment:
    """A new static list holding the segment's current members (written in one statement).

    `within` (e.g. the actor's visible contacts) limits the snapshot to those contacts.
    """
    now = timezone.now()
    name = (name or f"{segment.name} ({now:%Y-%m-%d %H:%M})")[:120]
    base = within if within is not None else Contact.objects.all()
    ids = base.filter(segment_q(segment, now=now)).values("id")
    snapshot = segment_create(data={"name": name, "kind": Segment.Kind.STATIC,
                                    "description": f"Snapshot of '{segment.name}'."[:500]},
                              actor=actor)
    _insert_members(snapshot, ids, now)
    snapshot.member_count = SegmentMembership.objects.filter(segment=snapshot).count()
    snapshot.last_evaluated_at = now
    snapshot.save(update_fields=["member_count", "last_evaluated_at"])
    return snapshot


def _static(segment: Segment, contact_ids: Sequence[int]) -> list[int]:
    if segment.is_dynamic:
        raise ValidationFailed("Only a static list has members added or removed by hand.",
                               field="kind", code="not_static")
    if len(contact_ids) > MAX_MANUAL_MEMBERS:
        raise ValidationFailed(f"At most {MAX_MANUAL_MEMBERS} contacts at once.",
                               field="contact_ids", code="too_many")
    return sorted({int(i) for i in contact_ids})


@transaction.atomic
def static_members_add(*, segment: Segment, contacts: QuerySet[Contact],
                       contact_ids: Sequence[int], actor=None) -> int:
    """Add the contacts of `contact_ids` found in `contacts` (the caller's visible contacts)
    to a static list; returns how many were new. Unknown or invisible ids are refused."""
    ids = _static(segment, contact_ids)
    found = set(contacts.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed(f"There is no contact {missing[0]}.", field="contact_ids")
    have = set(SegmentMembership.objects.filter(segment=segment, contact_id__in=ids)
               .values_list("contact_id", flat=True))
    now = timezone.now()
    new = [SegmentMembership(segment=segment, contact_id=i, added_at=now)
           for i in ids if i not in have]
    SegmentMembership.objects.bulk_create(new, batch_size=CHUNK)
    _recount(segment)
    return len(new)


@transaction.atomic
def static_members_remove(*, segment: Segment, contacts: QuerySet[Contact],
                          contact_ids: Sequence[int], actor=None) -> int:
    """Remove those of `contact_ids` that `contacts` admits from a static list."""
    ids = _static(segment, contact_ids)
    deleted, _ = SegmentMembership.objects.filter(
        segment=segment, contact_id__in=contacts.filter(pk__in=ids).values("pk")).delete()
    _recount(segment)
    return deleted


def _recount(segment: Segment) -> None:
    segment.member_count = SegmentMembership.objects.filter(segment=segment).count()
    segment.updated_at = timezone.now()
    segment.save(update_fields=["member_count", "updated_at"])


# --- behaviour counters -------------------------------------------------------------------

@transaction.atomic
def behaviour_window_refresh(*, kind: str, days: int, now: datetime | None = None
                             ) -> BehaviourWindow:
    """Recount, in one INSERT … SELECT … GROUP BY, each contact's `kind` events in the
    `days` days up to `now`, copying beside each count the contact's country and scores;
    readers see the old counters until commit."""
    from datetime import timedelta

    from clm.analytics import derived
    from clm.analytics.models import ContactScore

    now = now or timezone.now()
    window, _ = BehaviourWindow.objects.get_or_create(kind=kind, days=days)
    BehaviourWindow.objects.select_for_update().filter(pk=window.pk).first()
    # Read before copying: a refresh finishing meanwhile leaves the copies looking stale
    # (score conditions then read ContactScore), never current while they are not.
    scores_from = latest_score_refresh()
    BehaviourCounter.objects.filter(window=window).delete()
    grouped = (Event.objects.filter(kind=kind, occurred_at__gt=now - timedelta(days=days),
                                    occurred_at__lte=now)
               .order_by().values("contact_id").annotate(n=Count("id")).values("contact_id", "n"))
    sql, params = grouped.query.sql_with_params()
    qn = connection.ops.quote_name
    table = qn(BehaviourCounter._meta.db_table)
    contacts, scores = qn(Contact._meta.db_table), qn(ContactScore._meta.db_table)
    # The health score is not stored: derived from its stored parts, as ContactScore reads it.
    health = derived.sql("health_score", lambda column: f"s.{qn(column)}", connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (window_id, contact_id, count, country, p_alive, "  # noqa: S608 - fixed names
            f"clv_decile, health_score) "
            f"SELECT %s, sub.contact_id, sub.n, c.country, s.p_alive, s.clv_decile, "
            f"{health} FROM ({sql}) sub JOIN {contacts} c ON c.id = sub.contact_id "
            f"LEFT JOIN {scores} s ON s.contact_id = sub.contact_id", [window.pk, *params])
    window.refreshed_at = now
    window.scores_refresh_id = scores_from
    window.contacts = BehaviourCounter.objects.filter(window=window).count()
    window.save(update_fields=["refreshed_at", "scores_refresh_id", "contacts"])
    return window


def behaviour_windows_refresh(pairs: Iterable[tuple[str, int]], *, now: datetime | None = None,
                              prune: bool = True) -> list[BehaviourWindow]:
    """Refresh the counters of `pairs`; with `prune`, drop windows no pair needs any more."""
    now = now or timezone.now()
    pairs = sorted(set(pairs))
    windows = [behaviour_window_refresh(kind=k, days=d, now=now) for k, d in pairs]
    if prune:
        keep = {w.pk for w in windows}
        for stale in BehaviourWindow.objects.exclude(pk__in=keep):
            with transaction.atomic():
                BehaviourCounter.objects.filter(window=stale).delete()
                stale.delete()
    return windows


# --- evaluation -------------------------------------------------------------------------------

@dataclass
class Evaluation:
    segment_id: int
    members: int
    entered: int
    left: int
    baseline: bool = False


@dataclass
class EvaluationRun:
    segments: list[Evaluation] = field(default_factory=list)
    windows: int = 0

    @property
    def events(self) -> int:
        return sum(e.entered + e.left for e in self.segments if not e.baseline)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


@transaction.atomic
def segment_evaluate(*, segment: Segment, now: datetime | None = None) -> Evaluation:
    """Store the dynamic segment's current members and record who entered and who left.

    Idempotent: a second run with nothing changed finds no difference and records nothing.
    The first evaluation of a segment stores its members as a baseline without events
    (nobody "entered" a segment that did not exist before).
    """
    now = now or timezone.now()
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    if not segment.is_dynamic:
        raise ValidationFailed("Only dynamic segments are evaluated.", field="kind")
    current = segment_contact_ids(segment, now=now)
    stored = SegmentMembership.objects.filter(segment=segment).values("contact_id")
    entered = list(current.exclude(pk__in=stored).order_by())
    left = list(SegmentMembership.objects.filter(segment=segment)
                .exclude(contact_id__in=current).values_list("contact_id", flat=True))
    for ids in _chunks(left):
        SegmentMembership.objects.filter(segment=segment, contact_id__in=ids).delete()
    for ids in _chunks(entered):
        SegmentMembership.objects.bulk_create(
            [SegmentMembership(segment=segment, contact_id=i, added_at=now) for i in ids],
            batch_size=CHUNK)
    baseline = segment.last_evaluated_at is None
    if not baseline:
        props = {"segment_id": segment.pk, "segment_name": segment.name}
        for kind, ids in ((ENTERED, entered), (LEFT, left)):
            for chunk in _chunks(ids):
                events_record_bulk([Event(contact_id=i, kind=kind, occurred_at=now,
                                          recorded_at=now, source="system",
                                          properties=props) for i in chunk])
    members = SegmentMembership.objects.filter(segment=segment).count()
    Segment.objects.filter(pk=segment.pk).update(last_evaluated_at=now, member_count=members)
    return Evaluation(segment_id=segment.pk, members=members, entered=len(entered),
                      left=len(left), baseline=baseline)


def segments_evaluate(*, now: datetime | None = None) -> EvaluationRun:
    """The periodic job: refresh the behaviour counters the active dynamic segments use,
    then evaluate each of them (one transaction per segment)."""
    now = now or timezone.now()
    segments = list(Segment.objects.filter(kind=Segment.Kind.DYNAMIC, active=True)
                    .order_by("pk"))
    pairs: set[tuple[str, int]] = set()
    for segment in segments:
        try:
            pairs |= validate(segment.definition)
        except ValidationFailed:
            continue  # a definition made invalid by a later change (e.g. a deleted property)
    run = EvaluationRun()
    run.windows = len(behaviour_windows_refresh(pairs, now=now))
    for segment in segments:
        try:
            run.segments.append(segment_evaluate(segment=segment, now=now))
        except ValidationFailed:
            continue
    return run
