"""The lifecycle engine's database side: load inputs, run the fold, write what changed.

Three entry points, all built on the same fold (clm.lifecycle.fold) and the same writer:
- `events_apply(event_ids)`: committed events, in batches. Per contact, inputs that sort
  after the stored high-water mark continue the fold from the stored state; otherwise (a
  late or repeated event) the contact is replayed from all its inputs and its history is
  replaced only if it differs — so a repeated event changes nothing.
- `contacts_advance(contact_ids)`: apply new manual moves / inactivity churn due by now.
- `rebuild_all()`: stream every relevant event ordered by contact and time, fold each
  contact, and bulk-write history, states, stages and `stage.changed` events.

Callers hold no lock; each function opens its own transaction and locks the contacts' state
rows (SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from clm.customers.models import Company, Contact
from clm.lifecycle.conf import setting
from clm.lifecycle.fold import (
    RANK_EVENT,
    RANK_MANUAL,
    STAGE_CHANGED,
    Fold,
    Input,
    Move,
    State,
)
from clm.lifecycle.models import ContactState, ManualMove, Rule, Stage, StageChange
from clm.lifecycle.rules import compile_rules, contact_fields_needed
from clm.timeline.models import Event
from clm.timeline.services import events_record_bulk

EVENT_SOURCE = "lifecycle"


def load_fold() -> Fold:
    """Stages and active rules, loaded once per batch."""
    stages = {s.key: (s.order, s.group) for s in Stage.objects.all()}
    rules = compile_rules(Rule.objects.filter(active=True))
    return Fold(stages=stages, rules=rules,
                churn_after=timedelta(days=int(setting("CLM_CHURN_AFTER_DAYS"))))


# ---------------------------------------------------------------------------------------
# Loading inputs
# ---------------------------------------------------------------------------------------

def _event_input(row) -> Input:
    event_id, _contact_id, kind, occurred_at, properties = row
    return Input(at=occurred_at, rank=RANK_EVENT, id=event_id, kind=kind,
                 properties=properties or {})


def _manual_input(move: ManualMove) -> Input:
    return Input(at=move.at, rank=RANK_MANUAL, id=move.pk, to_stage=move.to_stage,
                 reason=move.reason, actor_type=move.actor_type, actor_id=move.actor_id)


EVENT_COLUMNS = ("id", "contact_id", "kind", "occurred_at", "properties")


def _all_inputs(fold: Fold, contact_ids: Iterable[int]) -> dict[int, list[Input]]:
    """Every input of the given contacts, sorted."""
    ids = list(contact_ids)
    inputs: dict[int, list[Input]] = defaultdict(list)
    for chunk in _chunks(ids, 500):
        for row in Event.objects.filter(contact_id__in=chunk, kind__in=fold.relevant_kinds) \
                .values_list(*EVENT_COLUMNS):
            inputs[row[1]].append(_event_input(row))
        for move in ManualMove.objects.filter(contact_id__in=chunk):
            inputs[move.contact_id].append(_manual_input(move))
    for items in inputs.values():
        items.sort(key=lambda i: (i.at, i.rank, i.id))
    return inputs


def _contact_rows(fold: Fold, contact_ids: Iterable[int]) -> dict[int, dict]:
    """Current stage, company and the fields rules read, per contact."""
    needed = {name for name in contact_fields_needed(fold.rules)}
    columns = ["id", "stage", "company_id", *sorted(needed - {"stage", "company_id", "id"})]
    rows: dict[int, dict] = {}
    for chunk in _chunks(list(contact_ids), 500):
        for row in Contact.objects.filter(pk__in=chunk).values(*columns):
            rows[row["id"]] = row
    return rows


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------

def _state_from_row(row: ContactState) -> State:
    hwm = (row.hwm_at, row.hwm_rank, row.hwm_id) if row.hwm_at is not None else None
    return State(stage=row.stage, life=row.life, entered_at=row.entered_at, seq=row.seq,
                 anchor_at=row.anchor_at, hwm=hwm)


def _state_row(contact_id: int, state: State, fold: Fold) -> ContactState:
    hwm_at, hwm_rank, hwm_id = state.hwm if state.hwm else (None, 0, 0)
    return ContactState(contact_id=contact_id, stage=state.stage, life=state.life,
                        entered_at=state.entered_at, seq=state.seq, anchor_at=state.anchor_at,
                        churn_due_at=fold.due_at(state), hwm_at=hwm_at, hwm_rank=hwm_rank,
                        hwm_id=hwm_id)


STATE_FIELDS = ["stage", "life", "entered_at", "seq", "anchor_at", "churn_due_at", "hwm_at",
                "hwm_rank", "hwm_id"]


def _lock_states(contact_ids: list[int]) -> dict[int, State]:
    qs = ContactState.objects.filter(contact_id__in=contact_ids)
    if connection.features.has_select_for_update:
        qs = qs.select_for_update()
    return {row.contact_id: _state_from_row(row) for row in qs}


# ---------------------------------------------------------------------------------------
# Writing results
# ---------------------------------------------------------------------------------------

@dataclass
class Result:
    contact_id: int
    state: State
    moves: list[Move]
    replace: bool  # True: `moves` is the whole history; False: moves appended after seq_before
    seq_before: int = 0
    old_stage: str = ""
    company_id: int | None = None


@dataclass
class Stats:
    events: int = 0
    contacts: int = 0
    replayed: int = 0
    moves: int = 0
    extra: dict = field(default_factory=dict)


def _history_row(contact_id: int, m: Move) -> StageChange:
    return StageChange(contact_id=contact_id, seq=m.seq, from_stage=m.from_stage,
                       to_stage=m.to_stage, at=m.at, exited_at=m.exited_at,
                       cause_event_id=m.cause_event_id, manual_move_id=m.manual_move_id,
                       actor_type=m.actor_type, actor_id=m.actor_id, rule_id=m.rule_id,
                       reason=m.reason, life=m.life)


HISTORY_TUPLE = ("seq", "from_stage", "to_stage", "at", "exited_at", "cause_event_id",
                 "manual_move_id", "actor_type", "actor_id", "rule_id", "reason", "life")


def _move_tuple(m: Move) -> tuple:
    return (m.seq, m.from_stage, m.to_stage, m.at, m.exited_at, m.cause_event_id,
            m.manual_move_id, m.actor_type, m.actor_id, m.rule_id, m.reason, m.life)


def event_key(contact_id: int, move: Move) -> str:
    return f"{STAGE_CHANGED}:{contact_id}:{move.origin}"


def _event_properties(move: Move) -> dict:
    return {"from": move.from_stage, "to": move.to_stage, "life": move.life,
            "actor_type": move.actor_type, "reason": move.reason, "rule_id": move.rule_id,
            "cause_event_id": move.cause_event_id, "manual_move_id": move.manual_move_id}


def _stage_event(contact_id: int, move: Move, now: datetime) -> Event:
    return Event(contact_id=contact_id, kind=STAGE_CHANGED, occurred_at=move.at, recorded_at=now,
                 source=EVENT_SOURCE, properties=_event_properties(move),
                 idempotency_key=event_key(contact_id, move), actor_id=move.actor_id)


def _sync_stage_events(contact_ids: list[int], wanted: dict[int, list[Move]], now: datetime,
                       *, dispatch: bool) -> None:
    """Make the contacts' stage.changed events mirror their moves (by idempotency key)."""
    want: dict[str, tuple[int, Move]] = {}
    for cid in contact_ids:
        for move in wanted.get(cid, []):
            want[event_key(cid, move)] = (cid, move)
    stale: list[int] = []
    have: set[str] = set()
    for chunk in _chunks(contact_ids, 500):
        for pk, key, at, props in Event.objects.filter(contact_id__in=chunk, kind=STAGE_CHANGED) \
                .values_list("id", "idempotency_key", "occurred_at", "properties"):
            hit = want.get(key)
            if hit is None or hit[1].at != at or _event_properties(hit[1]) != props:
                stale.append(pk)
            else:
                have.add(key)
    for chunk in _chunks(stale, 500):
        Event.objects.filter(pk__in=chunk).delete()
    new = [_stage_event(cid, move, now) for key, (cid, move) in want.items() if key not in have]
    if new:
        if dispatch:
            events_record_bulk(new)
        else:
            Event.objects.bulk_create(new, batch_size=2000)


def _write(results: list[Result], fold: Fold, *, dispatch: bool = True) -> int:
    """Persist results: history, states, Contact.stage, Company.stage, stage.changed events."""
    now = timezone.now()
    moves_written = 0
    appended = [r for r in results if not r.replace and r.moves]
    replaced = [r for r in results if r.replace]

    # Appends: close the open row, add the new rows, record one event per move.
    reopen = {r.contact_id: r.moves[0].at for r in appended if r.seq_before}
    if reopen:
        open_rows = list(StageChange.objects.filter(contact_id__in=list(reopen),
                                                    exited_at__isnull=True))
        for row in open_rows:
            row.exited_at = reopen[row.contact_id]
        StageChange.objects.bulk_update(open_rows, ["exited_at"], batch_size=500)
    StageChange.objects.bulk_create(
        [_history_row(r.contact_id, m) for r in appended for m in r.moves], batch_size=1000)
    new_events = [_stage_event(r.contact_id, m, now) for r in appended for m in r.moves]
    moves_written += len(new_events)

    # Replays: replace the history only where it differs from what is stored.
    if replaced:
        ids = [r.contact_id for r in replaced]
        stored: dict[int, list[tuple]] = defaultdict(list)
        for chunk in _chunks(ids, 500):
            for row in StageChange.objects.filter(contact_id__in=chunk) \
                    .order_by("contact_id", "seq").values_list("contact_id", *HISTORY_TUPLE):
                stored[row[0]].append(tuple(row[1:]))
        changed = [r for r in replaced
                   if stored.get(r.contact_id, []) != [_move_tuple(m) for m in r.moves]]
        if changed:
            changed_ids = [r.contact_id for r in changed]
            for chunk in _chunks(changed_ids, 500):
                StageChange.objects.filter(contact_id__in=chunk).delete()
            StageChange.objects.bulk_create(
                [_history_row(r.contact_id, m) for r in changed for m in r.moves],
                batch_size=1000)
            moves_written += sum(len(r.moves) for r in changed)
            _sync_stage_events(changed_ids, {r.contact_id: r.moves for r in changed}, now,
                               dispatch=dispatch)
    if new_events:
        if dispatch:
            events_record_bulk(new_events)
        else:
            Event.objects.bulk_create(new_events, batch_size=2000)

    ContactState.objects.bulk_create(
        [_state_row(r.contact_id, r.state, fold) for r in results], batch_size=1000,
        update_conflicts=True, unique_fields=["contact"], update_fields=STATE_FIELDS)

    # Contact.stage is the lifecycle's own field: one UPDATE per target stage.
    by_stage: dict[str, list[int]] = defaultdict(list)
    companies: set[int] = set()
    for r in results:
        if r.state.stage and r.state.stage != r.old_stage:
            by_stage[r.state.stage].append(r.contact_id)
            if r.company_id:
                companies.add(r.company_id)
    for stage, ids in by_stage.items():
        for chunk in _chunks(ids, 500):
            Contact.objects.filter(pk__in=chunk).update(stage=stage)
    if companies:
        companies_restage(list(companies), fold)
    return moves_written


def company_stage(stages: Iterable[str], fold: Fold) -> str:
    """The most advanced stage by order, ignoring lost-group stages unless all are lost."""
    known = [s for s in stages if s in fold.order]
    live = [s for s in known if fold.group[s] != "lost"]
    pool = live or known
    return max(pool, key=lambda s: fold.order[s]) if pool else ""


def companies_restage(company_ids: list[int], fold: Fold) -> None:
    """Recompute Company.stage from its contacts' stages."""
    stages: dict[int, list[str]] = defaultdict(list)
    current: dict[int, str] = {}
    for chunk in _chunks(company_ids, 500):
        for cid, stage in Contact.objects.filter(company_id__in=chunk) \
                .values_list("company_id", "stage"):
            stages[cid].append(stage)
        current.update(Company.objects.filter(pk__in=chunk).values_list("id", "stage"))
    updates: dict[str, list[int]] = defaultdict(list)
    for cid in company_ids:
        stage = company_stage(stages.get(cid, []), fold)
        if stage != current.get(cid, ""):
            updates[stage].append(cid)
    for stage, ids in updates.items():
        for chunk in _chunks(ids, 500):
            Company.objects.filter(pk__in=chunk).update(stage=stage)


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------

def _run_contacts(fold: Fold, new_inputs: dict[int, list[Input]], *, advance_only: Iterable[int] = (),
                  dispatch: bool = True) -> Stats:
    """Fold new inputs (and inactivity due by now) for some contacts, inside one transaction."""
    now = timezone.now()
    stats = Stats()
    contact_ids = sorted(set(new_inputs) | set(advance_only))
    if not contact_ids:
        return stats
    with transaction.atomic():
        states = _lock_states(contact_ids)
        rows = _contact_rows(fold, contact_ids)
        contact_ids = [cid for cid in contact_ids if cid in rows]  # deleted meanwhile
        replay: list[int] = []
        results: list[Result] = []
        for cid in contact_ids:
            items = sorted(new_inputs.get(cid, []), key=lambda i: (i.at, i.rank, i.id))
            state = states.get(cid) or State()
            if items and state.hwm is not None and items[0].key <= state.hwm:
                replay.append(cid)
                continue
            seq_before = state.seq
            moves: list[Move] = []
            fold.run(state, items, moves, rows[cid], until=now)
            results.append(Result(cid, state, moves, replace=False, seq_before=seq_before,
                                  old_stage=rows[cid]["stage"],
                                  company_id=rows[cid]["company_id"]))
        if replay:
            all_inputs = _all_inputs(fold, replay)
            for cid in replay:
                state, moves = State(), []
                fold.run(state, all_inputs.get(cid, []), moves, rows[cid], until=now)
                results.append(Result(cid, state, moves, replace=True,
                                      old_stage=rows[cid]["stage"],
                                      company_id=rows[cid]["company_id"]))
        stats.contacts = len(results)
        stats.replayed = len(replay)
        stats.moves = _write(results, fold, dispatch=dispatch)
    return stats


def events_apply(event_ids: list[int]) -> Stats:
    """Apply committed events to their contacts' stages (idempotent; late events replay)."""
    fold = load_fold()
    new_inputs: dict[int, list[Input]] = defaultdict(list)
    count = 0
    for chunk in _chunks(sorted(set(event_ids)), 500):
        for row in Event.objects.filter(pk__in=chunk, kind__in=fold.relevant_kinds) \
                .values_list(*EVENT_COLUMNS):
            new_inputs[row[1]].append(_event_input(row))
            count += 1
    stats = _run_contacts(fold, new_inputs)
    stats.events = count
    return stats


def manual_moves_apply(moves: list[ManualMove]) -> Stats:
    """Apply freshly written manual moves (caller's transaction; late ones replay)."""
    fold = load_fold()
    new_inputs: dict[int, list[Input]] = defaultdict(list)
    for move in moves:
        new_inputs[move.contact_id].append(_manual_input(move))
    return _run_contacts(fold, new_inputs)


def contacts_advance(contact_ids: list[int]) -> Stats:
    """Apply inactivity churn due by now to these contacts."""
    return _run_contacts(load_fold(), {}, advance_only=contact_ids)


def contacts_replay(contact_ids: list[int]) -> Stats:
    """Replay these contacts from all their inputs (used after rule changes for a few)."""
    fold = load_fold()
    now = timezone.now()
    with transaction.atomic():
        _lock_states(contact_ids)
        rows = _contact_rows(fold, contact_ids)
        all_inputs = _all_inputs(fold, rows)
        results = []
        for cid, row in rows.items():
            state, moves = State(), []
            fold.run(state, all_inputs.get(cid, []), moves, row, until=now)
            results.append(Result(cid, state, moves, replace=True, old_stage=row["stage"],
                                  company_id=row["company_id"]))
        moves_written = _write(results, fold)
    return Stats(contacts=len(results), replayed=len(results), moves=moves_written)


def due_contact_ids(now: datetime | None = None, limit: int = 5000) -> list[int]:
    """Contacts whose inactivity churn is due."""
    now = now or timezone.now()
    return list(ContactState.objects.filter(churn_due_at__lte=now)
                .order_by("churn_due_at").values_list("contact_id", flat=True)[:limit])


# ---------------------------------------------------------------------------------------
# Full rebuild
# ---------------------------------------------------------------------------------------

def rebuild_all(*, chunk_contacts: int = 20000, progress=None) -> Stats:
    """Replay every contact from its events and manual moves; replace all history.

    Streams events per range of contact ids, ordered by (contact, time, id), folds each
    contact in Python and bulk-writes history, states, Contact.stage, Company.stage and the
    stage.changed events (which are not handed to consumers again: they rebuild their own).
    """
    fold = load_fold()
    now = timezone.now()
    stats = Stats()
    bounds = Contact.objects.aggregate(lo=Min("id"), hi=Max("id"))
    if bounds["lo"] is None:
        StageChange.objects.all().delete()
        ContactState.objects.all().delete()
        return stats
    needed = contact_fields_needed(fold.rules)
    kinds = sorted(fold.relevant_kinds)
    for lo in range(bounds["lo"], bounds["hi"] + 1, chunk_contacts):
        hi = lo + chunk_contacts
        with transaction.atomic():
            stats.events += _rebuild_range(fold, lo, hi, kinds, needed, now, stats)
        if progress:
            progress(hi, bounds["hi"], stats)
    _restage_all_companies(fold)
    return stats


def _rebuild_range(fold: Fold, lo: int, hi: int, kinds: list[str], needed: set[str],
                   now: datetime, stats: Stats) -> int:
    in_range = {"contact_id__gte": lo, "contact_id__lt": hi}
    locked = ContactState.objects.filter(**in_range)
    if connection.features.has_select_for_update:
        list(locked.select_for_update().values_list("pk", flat=True))
    contacts: dict[int, dict] = {}
    if needed:
        columns = ["id", *sorted(needed)]
        contacts = {r["id"]: r for r in Contact.objects.filter(id__gte=lo, id__lt=hi)
                    .values(*columns)}
    manual: dict[int, list[Input]] = defaultdict(list)
    for move in ManualMove.objects.filter(**in_range).order_by("contact_id", "at", "id"):
        manual[move.contact_id].append(_manual_input(move))

    events = _stream_events(Event.objects.filter(**in_range, kind__in=kinds)
                            .order_by("contact_id", "occurred_at", "id"))
    history: list[tuple] = []
    states: list[tuple] = []
    wanted: dict[int, list[Move]] = {}
    count = 0
    for cid, rows in itertools.groupby(events, key=lambda r: r[1]):
        inputs = [Input(at, RANK_EVENT, eid, kind, props) for eid, _c, kind, at, props in rows]
        count += len(inputs)
        extra = manual.pop(cid, None)
        if extra:
            inputs = sorted(inputs + extra, key=lambda i: (i.at, i.rank, i.id))
        _rebuild_one(fold, cid, inputs, contacts.get(cid), now, history, states, wanted)
    for cid, inputs in manual.items():  # contacts with manual moves and no relevant event
        _rebuild_one(fold, cid, inputs, contacts.get(cid), now, history, states, wanted)

    StageChange.objects.filter(**in_range).delete()
    ContactState.objects.filter(**in_range).delete()
    _raw_insert(StageChange, HISTORY_COLUMNS, history)
    _raw_insert(ContactState, STATE_COLUMNS, states)
    _sync_range_events(lo, hi, wanted, now)
    _restage_range(lo, hi)
    stats.contacts += len(states)
    stats.moves += len(history)
    return count


def _rebuild_one(fold: Fold, cid: int, inputs: list[Input], contact: dict | None,
                 now: datetime, history: list[tuple], states: list[tuple],
                 wanted: dict[int, list[Move]]) -> None:
    state, moves = State(), []
    fold.run(state, inputs, moves, contact, until=now)
    adapt = connection.ops.adapt_datetimefield_value
    hwm_at, hwm_rank, hwm_id = state.hwm if state.hwm else (None, 0, 0)
    states.append((cid, state.stage, state.life, adapt(state.entered_at), state.seq,
                   adapt(state.anchor_at), adapt(fold.due_at(state)), adapt(hwm_at), hwm_rank,
                   hwm_id))
    if moves:
        wanted[cid] = moves
        history.extend((cid, m.seq, m.from_stage, m.to_stage, adapt(m.at), adapt(m.exited_at),
                        m.cause_event_id, m.manual_move_id, m.actor_type, m.actor_id,
                        m.rule_id, m.reason, m.life) for m in moves)


HISTORY_COLUMNS = ("contact_id", "seq", "from_stage", "to_stage", "at", "exited_at",
                   "cause_event_id", "manual_move_id", "actor_type", "actor_id", "rule_id",
                   "reason", "life")
STATE_COLUMNS = ("contact_id", "stage", "life", "entered_at", "seq", "anchor_at",
                 "churn_due_at", "hwm_at", "hwm_rank", "hwm_id")
EVENT_INSERT_COLUMNS = ("contact_id", "kind", "occurred_at", "recorded_at", "source",
                        "properties", "idempotency_key", "actor_id")


def _raw_insert(model, columns: tuple[str, ...], rows: list[tuple], batch: int = 5000) -> None:
    """executemany INSERT of already-adapted values: the rebuild's write path, without the
    per-row cost of model instances (the values come from our own fold, not from users)."""
    if not rows:
        return
    qn = connection.ops.quote_name
    sql = (f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch):
            cursor.executemany(sql, rows[start:start + batch])


def _stream_events(qs) -> Iterator[tuple]:
    """(id, contact_id, kind, occurred_at, properties) rows straight from the cursor.

    Skips Django's per-row converters: times are parsed here, and JSON properties are left
    as text for the fold to parse only when a rule's condition reads them.
    """
    sql, params = qs.values_list(*EVENT_COLUMNS).query.sql_with_params()
    sqlite = connection.vendor == "sqlite"
    parse = datetime.fromisoformat
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(5000)
            if not rows:
                return
            if sqlite:  # naive UTC (Django's converter) or text, depending on the build
                for eid, cid, kind, at, props in rows:
                    if at.__class__ is str:
                        at = parse(at)
                    yield eid, cid, kind, at.replace(tzinfo=UTC), props
            else:
                yield from rows


def _sync_range_events(lo: int, hi: int, wanted: dict[int, list[Move]], now: datetime) -> None:
    want = {event_key(cid, m): (cid, m) for cid, moves in wanted.items() for m in moves}
    stale: list[int] = []
    have: set[str] = set()
    for pk, key, at, props in Event.objects.filter(
            contact_id__gte=lo, contact_id__lt=hi, kind=STAGE_CHANGED) \
            .values_list("id", "idempotency_key", "occurred_at", "properties") \
            .iterator(chunk_size=5000):
        hit = want.get(key)
        if hit is None or hit[1].at != at or _event_properties(hit[1]) != props:
            stale.append(pk)
        else:
            have.add(key)
    for chunk in _chunks(stale, 500):
        Event.objects.filter(pk__in=chunk).delete()
    adapt = connection.ops.adapt_datetimefield_value
    recorded = adapt(now)
    encode = json.dumps
    _raw_insert(Event, EVENT_INSERT_COLUMNS, [
        (cid, STAGE_CHANGED, adapt(m.at), recorded, EVENT_SOURCE,
         encode(_event_properties(m)), key, m.actor_id)
        for key, (cid, m) in want.items() if key not in have])


def _restage_range(lo: int, hi: int) -> None:
    """Contact.stage := the rebuilt state's stage, where the engine has one and it differs."""
    with connection.cursor() as cursor:
        contact_table = Contact._meta.db_table
        state_table = ContactState._meta.db_table
        cursor.execute(
            f"UPDATE {contact_table} SET stage = ("  # noqa: S608 - table names from models
            f" SELECT s.stage FROM {state_table} s WHERE s.contact_id = {contact_table}.id)"
            f" WHERE id >= %s AND id < %s AND EXISTS ("
            f" SELECT 1 FROM {state_table} s WHERE s.contact_id = {contact_table}.id"
            f" AND s.stage <> '' AND s.stage <> {contact_table}.stage)", [lo, hi])


def _restage_all_companies(fold: Fold) -> None:
    stages: dict[int, list[str]] = defaultdict(list)
    for company_id, stage in Contact.objects.filter(company_id__isnull=False) \
            .values_list("company_id", "stage").iterator(chunk_size=10000):
        stages[company_id].append(stage)
    current = dict(Company.objects.values_list("id", "stage").iterator(chunk_size=10000))
    updates: dict[str, list[int]] = defaultdict(list)
    for cid, old in current.items():
        stage = company_stage(stages.get(cid, []), fold)
        if stage != old:
            updates[stage].append(cid)
    for stage, ids in updates.items():
        for chunk in _chunks(ids, 500):
            Company.objects.filter(pk__in=chunk).update(stage=stage)
