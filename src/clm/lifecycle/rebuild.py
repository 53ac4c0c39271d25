"""`lifecycle_rebuild`: replay every contact from its events and manual moves.

Per range of contact ids, in its own transaction:
1. read: the events of kinds some rule reads (plus purchases when inactivity churn is on),
   straight from the driver, times as text, properties only for kinds whose rules read them
   (parsed later, only if a rule gets that far); the range's manual moves;
2. fold each contact (clm.lifecycle.fold, the code the incremental engine runs);
3. write only what differs from what is stored: history rows and states of the contacts
   whose result changed, stage.changed events by idempotency key, Contact.stage in one
   UPDATE. A first rebuild inserts everything; a repeated one reads and compares.
Company.stage is recomputed at the end.

The result equals the incremental engine's (tests/lifecycle/test_equivalence.py).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
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

PHASES = ("read", "fold", "write_history", "write_states", "write_events", "write_stages",
          "commit", "companies")


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


SQLITE_CACHE_KIB = 2 * 1024 * 1024  # page cache of the rebuild's connection (2 GiB at most)


def rebuild(fold: Fold, *, chunk_contacts: int = 50000, per_range: bool | None = None,
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
    stats.extra["seconds"] / ["cpu_seconds"] hold the time by phase.
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
    # Millions of long-lived tuples: the cyclic GC would walk them again and again for
    # nothing (they hold no cycles); collected once at the end instead.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    cache = _bigger_cache() if sqlite and not per_range else None
    try:
        with transaction.atomic() if not per_range else nullcontext():
            # From an empty history (first rebuild): build its secondary indexes once at the
            # end (a sort) instead of row by row. Same transaction: readers never miss them.
            deferred = _drop_history_indexes() if sqlite and not per_range else []
            for start, end in ranges:
                with transaction.atomic() if per_range else nullcontext():
                    job.range(start, end)
                    clock.start("commit")
                clock.stop()
                if progress:
                    progress(min(end - 1, hi), hi, stats)
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
        if cache is not None:
            store.execute(f"PRAGMA cache_size = {int(cache)}")
        if gc_was_enabled:
            gc.enable()
    stats.extra["seconds"] = dict(clock.seconds)
    stats.extra["cpu_seconds"] = dict(clock.cpu)
    return stats


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

    # -- one range -------------------------------------------------------------------------

    def range(self, lo: int, hi: int) -> None:
        clock, fold, stats = self.clock, self.fold, self.stats
        clock.start("read")
        contacts, manual, events = self._read(lo, hi)
        stats.events += len(events)

        clock.start("fold")
        ranking = marks.current_ranking(share_lock=True)
        self.rankings.add(marks.signature(ranking))
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
        for cid in sorted(manual):  # contacts with manual moves and no relevant event
            finish(cid, [])
        states.sort()
        history.sort(key=_contact_seq)
        stats.contacts += len(states)
        stats.moves += len(history)

        clock.start("write_history")
        self._write_history(lo, hi, history)
        clock.start("write_states")
        self._write_states(lo, hi, states)
        clock.start("write_events")
        self._write_events(lo, hi, want)
        clock.start("write_stages")
        store.execute(  # Contact.stage := the rebuilt stage, where there is one and it differs
            f"UPDATE {CONTACTS} SET stage = (SELECT s.stage FROM {STATES} s "  # noqa: S608
            f"WHERE s.contact_id = {CONTACTS}.id) WHERE id >= %s AND id < %s AND EXISTS ("
            f"SELECT 1 FROM {STATES} s WHERE s.contact_id = {CONTACTS}.id "
            f"AND s.stage <> '' AND s.stage <> {CONTACTS}.stage)", [lo, hi])

    # -- writes: only what differs -----------------------------------------------------------

    def _write_history(self, lo: int, hi: int, history: list[tuple]) -> None:
        stored = list(store.fetch(
            f"SELECT {select_list(HISTORY_COLUMNS)} FROM {HISTORY} "  # noqa: S608
            f"WHERE contact_id >= %s AND contact_id < %s ORDER BY contact_id, seq", [lo, hi]))
        if stored == history:
            return
        if not stored:
            store.insert(HISTORY, HISTORY_COLUMNS, history)
            return
        old, new = _by_contact(stored), _by_contact(history)
        changed = sorted(cid for cid in old.keys() | new.keys() if old.get(cid) != new.get(cid))
        stale = [cid for cid in changed if cid in old]
        if len(stale) * 2 > len(old):
            store.execute(f"DELETE FROM {HISTORY} "  # noqa: S608
                          f"WHERE contact_id >= %s AND contact_id < %s", [lo, hi])
            store.insert(HISTORY, HISTORY_COLUMNS, history)
            return
        store.execute_many(f"DELETE FROM {HISTORY} WHERE contact_id = %s",  # noqa: S608
                           [(cid,) for cid in stale])
        store.insert(HISTORY, HISTORY_COLUMNS,
                     [row for cid in changed for row in new.get(cid, ())])

    def _write_states(self, lo: int, hi: int, states: list[tuple]) -> None:
        stored = list(store.fetch(
            f"SELECT {select_list(STATE_COLUMNS)} FROM {STATES} "  # noqa: S608
            f"WHERE contact_id >= %s AND contact_id < %s ORDER BY contact_id", [lo, hi]))
        if stored == states:
            return
        if not stored:
            store.insert(STATES, STATE_COLUMNS, states)
            return
        old = {row[0]: row for row in stored}
        new_ids = {row[0] for row in states}
        store.execute_many(f"DELETE FROM {STATES} WHERE contact_id = %s",  # noqa: S608
                           [(cid,) for cid in old if cid not in new_ids])
        _upsert_states([row for row in states if old.get(row[0]) != row])

    def _write_events(self, lo: int, hi: int, want: dict[str, tuple]) -> None:
        """stage.changed events by idempotency key: keep equal ones, replace the others."""
        stale: list[tuple[int]] = []
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
                stale.append((pk,))
        store.execute_many(f"DELETE FROM {EVENTS} WHERE id = %s", stale)  # noqa: S608
        recorded = self.recorded
        rows = [(cid, STAGE_CHANGED, at, recorded, EVENT_SOURCE, text, key, actor_id)
                for key, (cid, at, text, actor_id) in want.items() if key not in have]
        # Not handed to the consumers: they rebuild their own state from the timeline.
        store.insert(EVENTS, STAGE_EVENT_COLUMNS, rows)


def _same(value):
    return value


def _contact_seq(row: tuple) -> tuple[int, int]:
    return row[0], row[1]


def _by_contact(rows: list[tuple]) -> dict[int, list[tuple]]:
    grouped: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        grouped[row[0]].append(row)
    return grouped


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
