"""`lifecycle_rebuild`: replay every contact from its events and manual moves.

Per range of contact ids:
1. read: the events of kinds some rule reads (plus purchases when inactivity churn is on),
   straight from the driver, times as text, properties only for kinds whose rules read them
   (parsed later, only if a rule gets that far); the range's manual moves;
2. fold each contact (clm.lifecycle.fold, the code the incremental engine runs);
3. compare with what is stored, giving a `_Plan`: history rows and states of the contacts
   whose result changed, stage.changed events by idempotency key, Contact.stage updates. A
   first rebuild inserts everything; a repeated one reads, compares and writes nothing;
4. write the plan.
Company.stage is recomputed at the end.

On a file SQLite database, steps 1-3 run in worker processes (one per core, at most
MAX_WORKERS) while this process writes, in range order, in one transaction: SQLite has one
writer, and the workers read the committed database, which is what this transaction sees
minus its own writes to ranges the workers are done with. Elsewhere (PostgreSQL, whose
per-range transactions lock the range's states against the engine in step 1; in-memory
databases; inside a caller's transaction) all four steps run here, range by range.

The result equals the incremental engine's (tests/lifecycle/test_equivalence.py).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from clm.lifecycle import marks, store
from clm.lifecycle.engine import (
    CONTACTS,
    EVENT_SOURCE,
    EVENTS,
    HISTORY,
    HISTORY_COLUMNS,
    MANUAL,
    STAGE_EVENT_COLUMNS,
    STATE_COLUMNS,
    STATES,
    Stats,
    _event_select,
    _kinds_sql,
    _upsert_states,
    company_stage,
    select_list,
)
from clm.lifecycle.fold import RANK_EVENT, RANK_MANUAL, STAGE_CHANGED, Fold, Move, State
from clm.lifecycle.rules import contact_fields_needed
from clm.timeline.models import Event

PHASES = ("read", "fold", "compare", "wait", "write_history", "write_states", "write_events",
          "write_stages", "commit", "companies")
MAX_WORKERS = 4


class _Clock:
    """Wall and CPU seconds per phase (reported by the command and the benchmark)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self._phase = ""
        self._t = self._c = 0.0

    def start(self, phase: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self._phase:
            self.seconds[self._phase] += now - self._t
            self.cpu[self._phase] += cpu - self._c
        self._phase, self._t, self._c = phase, now, cpu

    def stop(self) -> None:
        self.start("")


# Page cache of the rebuild's connection on SQLite (KiB). A rebuild from an empty history
# dirties ~3.5 GB at 1M contacts (the events table's indexes gain an entry on nearly every
# page); with less cache than that, dirty pages spill to the WAL mid-transaction and are
# written again when a later range touches them.
SQLITE_CACHE_KIB = 4 * 1024 * 1024


@dataclass
class _Plan:
    """One range's result and what to write for it (made by `_Job.compute`, maybe in a worker)."""

    lo: int
    hi: int
    events: int = 0
    contacts: int = 0
    moves: int = 0
    ranking: str = ""
    # ("insert", rows) into an empty range; ("range", rows): replace the range's rows;
    # ("rows", (contact, seq) to delete, {column positions: rows of new values + key} to
    # update, rows to insert); None: all equal.
    history: tuple | None = None
    # ("insert", rows); ("upsert", contact ids to delete, rows); None: all equal.
    states: tuple | None = None
    stale_events: list[tuple[int]] = field(default_factory=list)  # (event id,) to delete
    new_events: list[tuple] = field(default_factory=list)  # rows of STAGE_EVENT_COLUMNS
    stages: list[tuple[str, int]] = field(default_factory=list)  # (stage, contact id)
    seconds: dict[str, float] = field(default_factory=dict)  # the worker's clock, if any
    cpu: dict[str, float] = field(default_factory=dict)


def rebuild(fold: Fold, *, chunk_contacts: int = 50000, per_range: bool | None = None,
            workers: int | None = None,
            progress: Callable[[int, int, Stats], None] | None = None) -> Stats:
    """Rebuild every contact's stage, history, state and stage.changed events.

    Works through ranges of `chunk_contacts` contact ids; `progress(done_up_to_id, max_id,
    stats)` is called after each. With `per_range` each range is its own transaction (the
    default on PostgreSQL, whose row locks let the engine go on beside the rebuild). On
    SQLite the default is one transaction with a large page cache: SQLite has one writer at
    a time anyway, and a rebuild's random-order index writes (the events table's time and
    key indexes) then reach the disk once instead of once per range — several gigabytes
    less at 10M events. Writers wait meanwhile (their busy timeout), so on a live SQLite
    system run it when little is written, or pass per_range=True.
    `workers`: processes that read, fold and compare (see the module doc); 0 or 1 for none;
    by default one per core, at most MAX_WORKERS, where they can be used (SQLite, one
    transaction, a database file, and no other thread in this process).
    stats.extra["seconds"] / ["cpu_seconds"] hold this process's time by phase, and
    ["worker_seconds"] / ["worker_cpu_seconds"] the workers' (summed over workers).
    """
    stats = Stats()
    clock = _Clock()
    sqlite = store.is_sqlite()
    if per_range is None:
        per_range = not sqlite
    (lo, hi), = store.fetch(f"SELECT MIN(id), MAX(id) FROM {CONTACTS}")  # noqa: S608
    if lo is None:
        with transaction.atomic():
            store.execute(f"DELETE FROM {HISTORY}")  # noqa: S608
            store.execute(f"DELETE FROM {STATES}")  # noqa: S608
        return stats
    job = _Job(fold, stats, clock)
    ranges = [(start, start + chunk_contacts) for start in range(lo, hi + 1, chunk_contacts)]
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    # fork copies only the calling thread: with others running (a threaded server or task
    # worker) a lock one of them holds would stay locked in the children forever.
    parallel = workers > 1 and len(ranges) > 1 and sqlite and not per_range \
        and "fork" in multiprocessing.get_all_start_methods() and _workers_see_our_data() \
        and threading.active_count() == 1
    # Millions of long-lived tuples: the cyclic GC would walk them again and again for
    # nothing (they hold no cycles); collected once at the end instead.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    pool = cache = None
    try:
        pool = _start_workers(job, workers) if parallel else None
        cache = _bigger_cache() if sqlite and not per_range else None
        with transaction.atomic() if not per_range else nullcontext():
            # From an empty history (first rebuild): build its secondary indexes once at the
            # end (a sort) instead of row by row. Same transaction: readers never miss them.
            deferred = _drop_history_indexes() if sqlite and not per_range else []
            plans = _worker_plans(pool, ranges, clock, workers) if pool else None
            for start, end in ranges:
                with transaction.atomic() if per_range else nullcontext():
                    plan = next(plans) if plans else job.compute(start, end)
                    job.write(plan)
                    clock.start("commit")
                clock.stop()
                if progress:
                    progress(min(end - 1, hi), hi, stats)
            if pool:  # done: no reader left behind when the commit checkpoints the WAL
                pool.close()
                pool.join()
            clock.start("write_history")
            for _name, sql in deferred:
                store.execute(sql)
            clock.start("companies")
            with transaction.atomic():
                _restage_companies(fold)
                if len(job.rankings) == 1:
                    _record_ranking(job.rankings.pop())
            clock.start("commit")
        clock.stop()
    finally:
        if pool:
            pool.terminate()
            pool.join()
        if cache is not None:
            store.execute(f"PRAGMA cache_size = {int(cache)}")
        if gc_was_enabled:
            gc.enable()
    stats.extra["seconds"] = dict(clock.seconds)
    stats.extra["cpu_seconds"] = dict(clock.cpu)
    if pool:
        stats.extra["workers"] = workers
        stats.extra["worker_seconds"] = job.worker_seconds
        stats.extra["worker_cpu_seconds"] = job.worker_cpu
    return stats


# -- worker processes ----------------------------------------------------------------------

def _workers_see_our_data() -> bool:
    """Whether workers' own connections read what this one sees: a database file, and no
    transaction of the caller's holding uncommitted rows (tests run inside one)."""
    return not connection.in_atomic_block and not connection.is_in_memory_db()


_worker_job: _Job | None = None  # the job a forked worker computes plans for


def _start_workers(job: _Job, workers: int):
    """A pool of forked processes that compute plans with `job` (inherited, not pickled)."""
    global _worker_job
    _worker_job = job
    # A SQLite connection must not cross a fork: close ours; each side reconnects.
    connection.close()
    try:
        return multiprocessing.get_context("fork").Pool(workers)
    finally:
        _worker_job = None


def _compute_in_worker(bounds: tuple[int, int]) -> _Plan:
    job = _worker_job
    assert job is not None  # noqa: S101 (set before the fork)
    job.clock = clock = _Clock()
    plan = job.compute(*bounds)
    clock.stop()
    plan.seconds, plan.cpu = clock.seconds, clock.cpu
    return plan


def _worker_plans(pool, ranges: list[tuple[int, int]], clock: _Clock, workers: int):
    """The ranges' plans in range order, computed a few ranges ahead of the writer.

    Called once this process holds the write transaction, so every worker reads after it
    began: nothing else commits until it ends.
    """
    ahead = deque()
    pending = iter(ranges)
    for bounds in pending:
        ahead.append(pool.apply_async(_compute_in_worker, (bounds,)))
        if len(ahead) >= 2 * workers:  # bounded: plans of a first rebuild are large
            break
    while ahead:
        clock.start("wait")
        plan = ahead.popleft().get()
        bounds = next(pending, None)
        if bounds is not None:
            ahead.append(pool.apply_async(_compute_in_worker, (bounds,)))
        yield plan


def _record_ranking(used: str) -> None:
    """Every history row now has advance_s by `used`: record it, if it is still current."""
    from clm.lifecycle.models import ReportState

    state, _ = ReportState.objects.select_for_update().get_or_create(name=marks.ADVANCE)
    if marks.signature(marks.current_ranking()) == used and state.ranking != used:
        state.ranking = used
        state.refreshed_at = timezone.now()
        state.save()


def _drop_history_indexes() -> list[tuple[str, str]]:
    """If the history is empty, drop its plain indexes; returns (name, CREATE statement)."""
    if list(store.fetch(f"SELECT 1 FROM {HISTORY} LIMIT 1")):  # noqa: S608
        return []
    indexes = list(store.fetch(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
        "AND sql IS NOT NULL AND sql NOT LIKE %s", [HISTORY, "CREATE UNIQUE%"]))
    for name, _sql in indexes:
        store.execute(f"DROP INDEX {store.qn(name)}")
    return indexes


def _bigger_cache() -> int:
    """Raise this connection's page cache for the rebuild; returns the old setting."""
    (old,), = store.fetch("PRAGMA cache_size")
    if old >= 0 or -old < SQLITE_CACHE_KIB:  # positive: pages; negative: KiB
        store.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    return old


class _Job:
    def __init__(self, fold: Fold, stats: Stats, clock: _Clock) -> None:
        self.fold = fold
        self.stats = stats
        self.clock = clock
        self.sqlite = store.is_sqlite()
        # SQLite: naive UTC datetimes throughout (cheaper to parse and compare); the
        # fold only compares and adds times, and the writer formats them back.
        now = timezone.now()
        self.until = now.astimezone(UTC).replace(tzinfo=None) if self.sqlite else now
        self.to_time = store.naive if self.sqlite else store.aware
        self.t = store.time_writer()
        self.recorded = self.t(now)
        self.dumps = store.PropertiesJSON()
        self.needed = contact_fields_needed(fold.rules)
        self.kinds_sql, self.kinds = _kinds_sql(fold) if fold.relevant_kinds else ("1 = 0", [])
        self.select = _event_select(fold)
        # Both range reads of the events table go through the (contact, kind, time) index.
        self.by_contact_kind = store.index_hint(Event, ["contact", "kind", "-occurred_at"])
        self.rankings: set[str] = set()  # funnel rankings advance_s was computed with
        self.worker_seconds = dict.fromkeys(PHASES, 0.0)
        self.worker_cpu = dict.fromkeys(PHASES, 0.0)

    # -- read ------------------------------------------------------------------------------

    def _read(self, lo: int, hi: int):
        in_range = "contact_id >= %s AND contact_id < %s"
        if connection.features.has_select_for_update:  # hold the range against the engine
            list(store.fetch(f"SELECT contact_id FROM {STATES} "  # noqa: S608
                             f"WHERE {in_range} FOR UPDATE", [lo, hi]))
        contacts: dict[int, dict] = {}
        if self.needed:
            from clm.customers.models import Contact

            contacts = {r["id"]: r for r in Contact.objects.filter(id__gte=lo, id__lt=hi)
                        .values("id", *sorted(self.needed))}
        to_time = self.to_time
        manual: dict[int, list[tuple]] = defaultdict(list)
        cols = select_list(("contact_id", "at", "id", "to_stage", "reason", "actor_type",
                            "actor_id"))
        for cid, at, mid, to_stage, reason, actor_type, actor_id in store.fetch(
                f"SELECT {cols} FROM {MANUAL} WHERE {in_range}", [lo, hi]):  # noqa: S608
            manual[cid].append((to_time(at), RANK_MANUAL, mid, to_stage, reason, actor_type,
                                actor_id))
        # Ordered by contact only: the few inputs of one contact are sorted in Python.
        events = list(store.fetch(f"{self.select}{self.by_contact_kind} WHERE {in_range} "
                                  f"AND {self.kinds_sql} ORDER BY contact_id",
                                  [lo, hi, *self.kinds]))
        return contacts, manual, events

    # -- one range: read, fold, compare ------------------------------------------------------

    def compute(self, lo: int, hi: int) -> _Plan:
        """Read, fold and compare the contacts with ids in [lo, hi); writes nothing."""
        clock, fold = self.clock, self.fold
        clock.start("read")
        contacts, manual, events = self._read(lo, hi)
        plan = _Plan(lo, hi, events=len(events))

        clock.start("fold")
        ranking = marks.current_ranking(share_lock=True)
        plan.ranking = marks.signature(ranking)
        ranks = marks.ranks_of(ranking)
        mark_moves = marks.mark_moves
        to_time = naive_parse = self.to_time
        if self.sqlite:
            from datetime import datetime as _dt

            fromiso = _dt.fromisoformat
        t, until, run, dumps = self.t, self.until, fold.run, self.dumps
        # A time that is never None: on SQLite (naive UTC) its text is str(); else as is.
        t_set = str if self.sqlite else _same
        if self.sqlite:  # every time here is naive UTC: its stored text is str()
            def t(value):
                return None if value is None else str(value)
        inactive, churn_after, group_get = bool(fold.inactivity), fold.churn_after, fold.group.get
        history: list[tuple] = []
        states: list[tuple] = []
        want: dict[str, tuple] = {}
        empty: dict = {}

        def finish(cid: int, inputs: list) -> None:
            extra = manual.pop(cid, None)
            if extra:
                inputs += extra
            inputs.sort()
            state, moves = State(), []
            run(state, inputs, moves, contacts.get(cid, empty), until)
            mark_moves(moves, ranks)
            hwm_at, hwm_rank, hwm_id = state.hwm if state.hwm else (None, 0, 0)
            anchor = state.anchor_at
            due = anchor + churn_after if inactive and anchor is not None \
                and group_get(state.stage) == "customer" else None  # fold.due_at, inlined
            states.append((cid, state.stage, state.life, t(state.entered_at), state.seq,
                           t(anchor), t(due), t(hwm_at), hwm_rank, hwm_id))
            m: Move
            for m in moves:
                at = t_set(m.at)
                history.append((cid, m.seq, m.from_stage, m.to_stage, at, t(m.exited_at),
                                m.cause_event_id, m.manual_move_id, m.actor_type, m.actor_id,
                                m.rule_id, m.reason, m.life, m.advance_s))
                origin = f"e{m.cause_event_id}" if m.cause_event_id is not None else m.origin
                want[f"{STAGE_CHANGED}:{cid}:{origin}"] = (cid, at, dumps(m), m.actor_id)

        current, inputs = None, []
        for cid, at, eid, kind, props in events:
            if cid != current:
                if current is not None:
                    finish(current, inputs)
                current, inputs = cid, []
            if self.sqlite:
                at = fromiso(at)
                if at.tzinfo is not None:  # not Django's format; normalise
                    at = naive_parse(at)
            else:
                at = to_time(at)
            inputs.append((at, RANK_EVENT, eid, kind, props))
        if current is not None:
            finish(current, inputs)
        del events
        for cid in sorted(manual):  # contacts with manual moves and no relevant event
            finish(cid, [])
        states.sort()
        history.sort(key=_contact_seq)
        plan.contacts, plan.moves = len(states), len(history)

        clock.start("compare")
        plan.history = self._compare_history(lo, hi, history)
        plan.states = self._compare_states(lo, hi, states)
        self._compare_events(lo, hi, want, plan)
        current_stage = dict(store.fetch(
            f"SELECT id, stage FROM {CONTACTS} WHERE id >= %s AND id < %s", [lo, hi]))  # noqa: S608
        # Contact.stage := the rebuilt stage, where there is one and it differs.
        plan.stages = [(row[1], row[0]) for row in states
                       if row[1] and current_stage.get(row[0], row[1]) != row[1]]
        return plan

    # -- compare: only what differs ----------------------------------------------------------

    def _compare_history(self, lo: int, hi: int, history: list[tuple]) -> tuple | None:
        stored = list(store.fetch(
            f"SELECT {select_list(HISTORY_COLUMNS)} FROM {HISTORY} "  # noqa: S608
            f"WHERE contact_id >= %s AND contact_id < %s ORDER BY contact_id, seq", [lo, hi]))
        if stored == history:
            return None
        if not stored:
            return ("insert", history)
        old = {(row[0], row[1]): row for row in stored}
        new = {(row[0], row[1]): row for row in history}
        deletes = sorted(key for key in old if key not in new)
        inserts = [row for key, row in new.items() if key not in old]
        if (len(deletes) + len(inserts)) * 2 > len(stored):
            return ("range", history)
        # A row at the same (contact, seq) is updated in place, only in the columns that
        # differ: after a change of the funnel ranking only advance_s does, and an UPDATE of
        # it leaves the history's other five indexes alone (a delete and insert rewrites all).
        updates: dict[tuple[int, ...], list[tuple]] = defaultdict(list)
        for key, row in new.items():
            was = old.get(key)
            if was is not None and was != row:
                cols = tuple(i for i in range(2, len(row)) if was[i] != row[i])
                updates[cols].append((*(row[i] for i in cols), *key))
        return ("rows", deletes, dict(updates), inserts)

    def _compare_states(self, lo: int, hi: int, states: list[tuple]) -> tuple | None:
        stored = list(store.fetch(
            f"SELECT {select_list(STATE_COLUMNS)} FROM {STATES} "  # noqa: S608
            f"WHERE contact_id >= %s AND contact_id < %s ORDER BY contact_id", [lo, hi]))
        if stored == states:
            return None
        if not stored:
            return ("insert", states)
        old = {row[0]: row for row in stored}
        new_ids = {row[0] for row in states}
        return ("upsert", [cid for cid in old if cid not in new_ids],
                [row for row in states if old.get(row[0]) != row])

    def _compare_events(self, lo: int, hi: int, want: dict[str, tuple], plan: _Plan) -> None:
        """stage.changed events by idempotency key: keep equal ones, replace the others."""
        have: set[str] = set()
        aware = store.aware
        for pk, key, at, props in store.fetch(
                f"SELECT id, idempotency_key, {store.column('occurred_at', time=True)}, "  # noqa: S608
                f"properties FROM {EVENTS}{self.by_contact_kind} "
                f"WHERE contact_id >= %s AND contact_id < %s AND kind = %s",
                [lo, hi, STAGE_CHANGED]):
            hit = want.get(key)
            if hit is not None and (at == hit[1] or aware(at) == aware(hit[1])) \
                    and store.same_json(props, hit[2]):
                have.add(key)
            else:
                plan.stale_events.append((pk,))
        recorded = self.recorded
        # In contact order, each contact's in time order (want's order): the order of the
        # events table's contact indexes.
        plan.new_events = [(cid, STAGE_CHANGED, at, recorded, EVENT_SOURCE, text, key, actor_id)
                           for key, (cid, at, text, actor_id) in want.items() if key not in have]

    # -- write -------------------------------------------------------------------------------

    def write(self, plan: _Plan) -> None:
        """Write what `plan` found different (caller holds the transaction)."""
        clock, stats = self.clock, self.stats
        stats.events += plan.events
        stats.contacts += plan.contacts
        stats.moves += plan.moves
        self.rankings.add(plan.ranking)
        for phase, seconds in plan.seconds.items():
            self.worker_seconds[phase] += seconds
        for phase, seconds in plan.cpu.items():
            self.worker_cpu[phase] += seconds
        lo, hi = plan.lo, plan.hi
        in_range = "contact_id >= %s AND contact_id < %s"

        clock.start("write_history")
        if plan.history is not None:
            how, *args = plan.history
            if how == "range":
                store.execute(f"DELETE FROM {HISTORY} WHERE {in_range}", [lo, hi])  # noqa: S608
            elif how == "rows":
                by_key = "WHERE contact_id = %s AND seq = %s"
                store.execute_many(f"DELETE FROM {HISTORY} {by_key}", args[0])  # noqa: S608
                for cols, rows in args[1].items():
                    sets = ", ".join(f"{store.qn(HISTORY_COLUMNS[i])} = %s" for i in cols)
                    store.execute_many(f"UPDATE {HISTORY} SET {sets} {by_key}",  # noqa: S608
                                       rows)
            store.insert(HISTORY, HISTORY_COLUMNS, args[-1])

        clock.start("write_states")
        if plan.states is not None:
            how, *args = plan.states
            if how == "insert":
                store.insert(STATES, STATE_COLUMNS, args[0])
            else:
                store.execute_many(f"DELETE FROM {STATES} WHERE contact_id = %s",  # noqa: S608
                                   [(cid,) for cid in args[0]])
                _upsert_states(args[1])

        clock.start("write_events")
        store.execute_many(f"DELETE FROM {EVENTS} WHERE id = %s",  # noqa: S608
                           plan.stale_events)
        # Not handed to the consumers: they rebuild their own state from the timeline.
        store.insert(EVENTS, STAGE_EVENT_COLUMNS, plan.new_events)

        clock.start("write_stages")
        store.execute_many(f"UPDATE {CONTACTS} SET stage = %s WHERE id = %s",  # noqa: S608
                           plan.stages)


def _same(value):
    return value


def _contact_seq(row: tuple) -> tuple[int, int]:
    return row[0], row[1]


def _restage_companies(fold: Fold) -> None:
    """Company.stage := its most advanced live contact's stage (see engine.company_stage)."""
    from clm.customers.models import Company

    table = Company._meta.db_table
    stages: dict[int, set[str]] = defaultdict(set)
    for company_id, stage in store.fetch(
            f"SELECT company_id, stage FROM {CONTACTS} WHERE company_id IS NOT NULL"):  # noqa: S608
        stages[company_id].add(stage)
    updates = []
    for company_id, old in store.fetch(f"SELECT id, stage FROM {table}"):  # noqa: S608
        stage = company_stage(stages.get(company_id, ()), fold)
        if stage != old:
            updates.append((stage, company_id))
    store.execute_many(f"UPDATE {table} SET stage = %s WHERE id = %s", updates)  # noqa: S608
