"""The lifecycle engine's database side: load inputs, run the fold, write what changed.

Entry points, all built on the same fold (clm.lifecycle.fold):
- `events_apply(event_ids)`: committed events, in batches. Per contact, inputs that sort
  after the stored high-water mark continue the fold from the stored state; otherwise (a
  late or repeated event) the contact is replayed from all its inputs and its history is
  replaced only if it differs — so a repeated event changes nothing.
- `manual_moves_apply(moves)`, `contacts_advance(contact_ids)` (inactivity churn due by
  now), `contacts_replay(contact_ids)`.
- `rebuild_all()`: every contact from scratch (clm.lifecycle.rebuild).

Callers hold no lock; each function opens its own transaction and locks the contacts' state
rows (SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers). Reads and writes go
through clm.lifecycle.store (plain SQL, no model instances): a batch of 1,000 events costs
a handful of statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from clm.customers.models import Company, Contact
from clm.lifecycle import marks, store
from clm.lifecycle.conf import setting
from clm.lifecycle.fold import (
    RANK_MANUAL,
    STAGE_CHANGED,
    Fold,
    Input,
    Move,
    State,
    event_input,
    manual_input,
)
from clm.lifecycle.models import ContactState, ManualMove, Rule, Stage, StageChange
from clm.lifecycle.rules import compile_rules, contact_fields_needed
from clm.timeline.models import Event
from clm.timeline.services import events_insert_rows

EVENT_SOURCE = "lifecycle"
CHUNK = 500  # ids per IN (…) list


def load_fold() -> Fold:
    """Stages and active rules, loaded once per batch."""
    stages = {s.key: (s.order, s.group) for s in Stage.objects.all()}
    rules = compile_rules(Rule.objects.filter(active=True))
    return Fold(stages=stages, rules=rules,
                churn_after=timedelta(days=int(setting("CLM_CHURN_AFTER_DAYS"))))


@dataclass
class Stats:
    events: int = 0
    contacts: int = 0
    replayed: int = 0
    moves: int = 0
    # Where the time went (seconds by phase), filled by the rebuild.
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Tables and columns
# ---------------------------------------------------------------------------------------

EVENTS = Event._meta.db_table
HISTORY = StageChange._meta.db_table
STATES = ContactState._meta.db_table
CONTACTS = Contact._meta.db_table
MANUAL = ManualMove._meta.db_table

HISTORY_COLUMNS = ("contact_id", "seq", "from_stage", "to_stage", "at", "exited_at",
                   "cause_event_id", "manual_move_id", "actor_type", "actor_id", "rule_id",
                   "reason", "life", "advance_s")
STATE_COLUMNS = ("contact_id", "stage", "life", "entered_at", "seq", "anchor_at",
                 "churn_due_at", "hwm_at", "hwm_rank", "hwm_id")
STAGE_EVENT_COLUMNS = ("contact_id", "kind", "occurred_at", "recorded_at", "source",
                       "properties", "idempotency_key", "actor_id")


TIME_COLUMNS = frozenset({"at", "exited_at", "entered_at", "anchor_at", "churn_due_at", "hwm_at",
                          "occurred_at"})


def select_list(columns: Iterable[str]) -> str:
    """Quoted columns for a raw SELECT, times as the connection's text (see store.column)."""
    return ", ".join(store.column(c, time=c in TIME_COLUMNS) for c in columns)


def history_row(cid: int, m: Move, t: Callable) -> tuple:
    """A history row as stored (times through `t`, the connection's time writer)."""
    return (cid, m.seq, m.from_stage, m.to_stage, t(m.at), t(m.exited_at), m.cause_event_id,
            m.manual_move_id, m.actor_type, m.actor_id, m.rule_id, m.reason, m.life, m.advance_s)


def state_row(cid: int, state: State, fold: Fold, t: Callable) -> tuple:
    hwm_at, hwm_rank, hwm_id = state.hwm if state.hwm else (None, 0, 0)
    return (cid, state.stage, state.life, t(state.entered_at), state.seq, t(state.anchor_at),
            t(fold.due_at(state)), t(hwm_at), hwm_rank, hwm_id)


def event_key(contact_id: int, move: Move) -> str:
    return f"{STAGE_CHANGED}:{contact_id}:{move.origin}"


def _event_properties(move: Move) -> dict:
    return store.event_properties(move)


def _upsert_states(rows: list[tuple]) -> None:
    cols = ", ".join(store.qn(c) for c in STATE_COLUMNS)
    updates = ", ".join(f"{store.qn(c)} = excluded.{store.qn(c)}" for c in STATE_COLUMNS[1:])
    store.execute_many(
        f"INSERT INTO {STATES} ({cols}) VALUES ({store.placeholders(len(STATE_COLUMNS))}) "  # noqa: S608
        f"ON CONFLICT (contact_id) DO UPDATE SET {updates}", rows)


# ---------------------------------------------------------------------------------------
# Loading inputs
# ---------------------------------------------------------------------------------------

def _event_select(fold: Fold) -> str:
    """Columns (contact_id, occurred_at, id, kind, properties-or-NULL) of relevant events.

    Properties are read only for kinds whose rules read them. On SQLite the time column is
    read as text (an expression has no declared type, so no Python converter runs).
    """
    when = sorted(fold.property_kinds)
    props = (f"CASE WHEN kind IN ({', '.join(_literal(k) for k in when)}) THEN properties END"
             if when else "NULL")
    at = store.column("occurred_at", time=True)
    return f"SELECT contact_id, {at}, id, kind, {props} FROM {EVENTS}"  # noqa: S608


def _literal(kind: str) -> str:
    """An event kind as an SQL string literal (kinds come from rules an admin saved)."""
    return "'" + kind.replace("'", "''") + "'"


def _kinds_sql(fold: Fold) -> tuple[str, list[str]]:
    kinds = sorted(fold.relevant_kinds)
    return f"kind IN ({store.placeholders(len(kinds))})", kinds


def _manual_rows(where: str, params: list) -> Iterable[tuple]:
    """(contact_id, input) of manual moves matching `where`."""
    cols = select_list(("contact_id", "at", "id", "to_stage", "reason", "actor_type",
                        "actor_id"))
    return store.fetch(
        f"SELECT {cols} FROM {MANUAL} WHERE {where} "  # noqa: S608
        f"ORDER BY contact_id, {store.qn('at')}, id", params)


def _all_inputs(fold: Fold, contact_ids: Iterable[int]) -> dict[int, list[Input]]:
    """Every input of the given contacts, sorted."""
    ids = sorted(contact_ids)
    inputs: dict[int, list[Input]] = defaultdict(list)
    if not fold.relevant_kinds:
        kinds_sql, kinds = "1 = 0", []
    else:
        kinds_sql, kinds = _kinds_sql(fold)
    select = _event_select(fold)
    aware = store.aware
    for chunk in store.chunks(ids, CHUNK):
        marks = store.placeholders(len(chunk))
        for cid, at, eid, kind, props in store.fetch(
                f"{select} WHERE contact_id IN ({marks}) AND {kinds_sql}", [*chunk, *kinds]):
            inputs[cid].append(event_input(aware(at), eid, kind, props))
        for cid, at, mid, to_stage, reason, actor_type, actor_id in _manual_rows(
                f"contact_id IN ({marks})", list(chunk)):
            inputs[cid].append(manual_input(aware(at), mid, to_stage, reason, actor_type,
                                            actor_id))
    for items in inputs.values():
        items.sort(key=_sort_key)
    return inputs


def _sort_key(inp: Input) -> tuple:
    return inp[0], inp[1], inp[2]


def _contact_rows(fold: Fold, contact_ids: Iterable[int]) -> dict[int, dict]:
    """Current stage, company and the fields rules read, per contact."""
    needed = contact_fields_needed(fold.rules)
    columns = ["id", "stage", "company_id", *sorted(needed - {"stage", "company_id", "id"})]
    rows: dict[int, dict] = {}
    for chunk in store.chunks(sorted(contact_ids), CHUNK):
        if needed - {"stage", "company_id", "id"}:
            for row in Contact.objects.filter(pk__in=chunk).values(*columns):
                rows[row["id"]] = row
        else:  # the common case: no rule reads contact fields
            for cid, stage, company_id in store.fetch(
                    f"SELECT id, stage, company_id FROM {CONTACTS} "  # noqa: S608
                    f"WHERE id IN ({store.placeholders(len(chunk))})", chunk):
                rows[cid] = {"id": cid, "stage": stage, "company_id": company_id}
    return rows


# ---------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------

def _lock_states(contact_ids: list[int]) -> dict[int, State]:
    aware = store.aware
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    states: dict[int, State] = {}
    for chunk in store.chunks(sorted(contact_ids), CHUNK):
        for cid, stage, life, entered, seq, anchor, hwm_at, hwm_rank, hwm_id in store.fetch(
                f"SELECT contact_id, stage, life, entered_at, seq, anchor_at, hwm_at, "  # noqa: S608
                f"hwm_rank, hwm_id FROM {STATES} "
                f"WHERE contact_id IN ({store.placeholders(len(chunk))}){lock}", chunk):
            hwm = (aware(hwm_at), hwm_rank, hwm_id) if hwm_at is not None else None
            states[cid] = State(stage=stage, life=life, entered_at=aware(entered), seq=seq,
                                anchor_at=aware(anchor), hwm=hwm)
    return states


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


def _stored_history(contact_ids: list[int]) -> dict[int, list[tuple]]:
    stored: dict[int, list[tuple]] = defaultdict(list)
    cols = select_list(HISTORY_COLUMNS)
    for chunk in store.chunks(contact_ids, CHUNK):
        for row in store.fetch(f"SELECT {cols} FROM {HISTORY} "  # noqa: S608
                               f"WHERE contact_id IN ({store.placeholders(len(chunk))}) "
                               f"ORDER BY contact_id, seq", chunk):
            stored[row[0]].append(row)
    return stored


def _sync_stage_events(contact_ids: list[int], wanted: dict[int, list[Move]]) -> None:
    """Make the contacts' stage.changed events mirror their moves (by idempotency key)."""
    dumps = store.PropertiesJSON()
    want: dict[str, tuple[int, Move, str]] = {}
    for cid in contact_ids:
        for move in wanted.get(cid, []):
            want[event_key(cid, move)] = (cid, move, dumps(move))
    stale: list[int] = []
    have: set[str] = set()
    for chunk in store.chunks(contact_ids, CHUNK):
        for pk, key, at, props in store.fetch(
                f"SELECT id, idempotency_key, occurred_at, properties FROM {EVENTS} "  # noqa: S608
                f"WHERE contact_id IN ({store.placeholders(len(chunk))}) AND kind = %s",
                [*chunk, STAGE_CHANGED]):
            hit = want.get(key)
            if hit is None or store.aware(at) != store.aware(hit[1].at) \
                    or not store.same_json(props, hit[2]):
                stale.append(pk)
            else:
                have.add(key)
    for chunk in store.chunks(stale, CHUNK):
        store.execute(f"DELETE FROM {EVENTS} WHERE id IN ({store.placeholders(len(chunk))})",  # noqa: S608
                      chunk)
    events_insert_rows([(cid, STAGE_CHANGED, move.at, EVENT_SOURCE, text, key, move.actor_id)
                        for key, (cid, move, text) in want.items() if key not in have])


def _write(results: list[Result], fold: Fold) -> int:
    """Persist results: history, states, Contact.stage, Company.stage, stage.changed events.

    Caller's transaction. advance_s (clm.lifecycle.marks) is computed here, with the ranking
    read under the marks' share lock: for the moves written, and for the stored rows of the
    same life that a new move rises above.
    """
    t = store.time_writer()
    dumps = store.PropertiesJSON()
    moves_written = 0
    appended = [r for r in results if not r.replace and r.moves]
    replaced = [r for r in results if r.replace]
    if appended or replaced:
        ranks = marks.ranks_of(marks.current_ranking(share_lock=True))
        for r in results:
            marks.mark_moves(r.moves, ranks)
        marks.write_updates(marks.stored_updates(
            {r.contact_id: r.moves for r in appended if r.seq_before}, ranks))

    # Appends: close the open row, add the new rows, record one event per move.
    store.execute_many(
        f"UPDATE {HISTORY} SET exited_at = %s WHERE contact_id = %s AND exited_at IS NULL",  # noqa: S608
        [(t(r.moves[0].at), r.contact_id) for r in appended if r.seq_before])
    store.insert(HISTORY, HISTORY_COLUMNS,
                 [history_row(r.contact_id, m, t) for r in appended for m in r.moves])
    new_events = [(r.contact_id, STAGE_CHANGED, m.at, EVENT_SOURCE, dumps(m),
                   event_key(r.contact_id, m), m.actor_id) for r in appended for m in r.moves]
    moves_written += len(new_events)

    # Replays: replace the history only where it differs from what is stored.
    if replaced:
        stored = _stored_history([r.contact_id for r in replaced])
        changed = [r for r in replaced
                   if stored.get(r.contact_id, []) !=
                   [history_row(r.contact_id, m, t) for m in r.moves]]
        if changed:
            changed_ids = [r.contact_id for r in changed]
            for chunk in store.chunks(changed_ids, CHUNK):
                store.execute(f"DELETE FROM {HISTORY} "  # noqa: S608
                              f"WHERE contact_id IN ({store.placeholders(len(chunk))})", chunk)
            store.insert(HISTORY, HISTORY_COLUMNS,
                         [history_row(r.contact_id, m, t) for r in changed for m in r.moves])
            moves_written += sum(len(r.moves) for r in changed)
            _sync_stage_events(changed_ids, {r.contact_id: r.moves for r in changed})
    events_insert_rows(new_events)  # handed to the consumers after commit

    _upsert_states([state_row(r.contact_id, r.state, fold, t) for r in results])

    # Contact.stage is the lifecycle's own field.
    companies: set[int] = set()
    updates = []
    for r in results:
        if r.state.stage and r.state.stage != r.old_stage:
            updates.append((r.state.stage, r.contact_id))
            if r.company_id:
                companies.add(r.company_id)
    store.execute_many(f"UPDATE {CONTACTS} SET stage = %s WHERE id = %s", updates)  # noqa: S608
    if companies:
        companies_restage(sorted(companies), fold)
    return moves_written


def company_stage(stages: Iterable[str], fold: Fold) -> str:
    """The most advanced stage by order, ignoring lost-group stages unless all are lost."""
    known = [s for s in stages if s in fold.order]
    live = [s for s in known if fold.group[s] != "lost"]
    pool = live or known
    return max(pool, key=lambda s: fold.order[s]) if pool else ""


def companies_restage(company_ids: list[int], fold: Fold) -> None:
    """Recompute Company.stage from its contacts' stages."""
    companies = Company._meta.db_table
    stages: dict[int, list[str]] = defaultdict(list)
    current: dict[int, str] = {}
    for chunk in store.chunks(sorted(company_ids), CHUNK):
        marks = store.placeholders(len(chunk))
        for cid, stage in store.fetch(f"SELECT company_id, stage FROM {CONTACTS} "  # noqa: S608
                                      f"WHERE company_id IN ({marks})", chunk):
            stages[cid].append(stage)
        current.update(store.fetch(f"SELECT id, stage FROM {companies} "  # noqa: S608
                                   f"WHERE id IN ({marks})", chunk))
    store.execute_many(f"UPDATE {companies} SET stage = %s WHERE id = %s", [  # noqa: S608
        (stage, cid) for cid in company_ids if cid in current
        and (stage := company_stage(stages.get(cid, []), fold)) != current[cid]])


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------

def _run_contacts(fold: Fold, new_inputs: dict[int, list[Input]], *,
                  advance_only: Iterable[int] = ()) -> Stats:
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
            items = sorted(new_inputs.get(cid, ()), key=_sort_key)
            state = states.get(cid) or State()
            if items and state.hwm is not None and _sort_key(items[0]) <= state.hwm:
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
        stats.moves = _write(results, fold)
    return stats


def events_apply(event_ids: list[int]) -> Stats:
    """Apply committed events to their contacts' stages (idempotent; late events replay)."""
    fold = load_fold()
    new_inputs: dict[int, list[Input]] = defaultdict(list)
    count = 0
    if fold.relevant_kinds:
        kinds_sql, kinds = _kinds_sql(fold)
        select = _event_select(fold)
        aware = store.aware
        for chunk in store.chunks(sorted(set(event_ids)), CHUNK):
            for cid, at, eid, kind, props in store.fetch(
                    f"{select} WHERE id IN ({store.placeholders(len(chunk))}) AND {kinds_sql}",
                    [*chunk, *kinds]):
                new_inputs[cid].append(event_input(aware(at), eid, kind, props))
                count += 1
    stats = _run_contacts(fold, new_inputs)
    stats.events = count
    return stats


def manual_moves_apply(moves: list[ManualMove]) -> Stats:
    """Apply freshly written manual moves (caller's transaction; late ones replay)."""
    fold = load_fold()
    new_inputs: dict[int, list[Input]] = defaultdict(list)
    for move in moves:
        new_inputs[move.contact_id].append(manual_input(
            store.aware(move.at), move.pk, move.to_stage, move.reason, move.actor_type, move.actor_id))
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


def due_contact_ids(now=None, limit: int = 5000) -> list[int]:
    """Contacts whose inactivity churn is due."""
    now = now or timezone.now()
    return list(ContactState.objects.filter(churn_due_at__lte=now)
                .order_by("churn_due_at").values_list("contact_id", flat=True)[:limit])


def rebuild_all(*, chunk_contacts: int = 50000, progress=None) -> Stats:
    """Replay every contact from its events and manual moves; see clm.lifecycle.rebuild."""
    from clm.lifecycle.rebuild import rebuild

    return rebuild(load_fold(), chunk_contacts=chunk_contacts, progress=progress)


__all__ = [
    "RANK_MANUAL",
    "Stats",
    "companies_restage",
    "company_stage",
    "contacts_advance",
    "contacts_replay",
    "due_contact_ids",
    "events_apply",
    "load_fold",
    "manual_moves_apply",
    "rebuild_all",
]
