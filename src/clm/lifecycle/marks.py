"""StageChange.advance_s: per history row, how long until the contact rose to a later funnel stage.

The funnel asks of every entry into a funnel stage A: did the same contact, later in the same
life, enter a funnel stage ranked above A within the window? Probing the contact's later rows
per entry costs seconds at a million contacts, so each row carries the answer for every
window instead: `advance_s` = seconds, rounded up, from its `at` to the earliest `at` of a
later row (higher seq) of the same contact and life whose stage ranks higher; null when there
is none or the row's own stage is not a funnel stage. Converted within W days ⇔
advance_s <= W * 86400 (exact: W * 86400 is a whole number of seconds).

Ranks are the positions of the funnel stages (prospect and customer groups) by (order, key):
data an admin edits. Everything that writes history (the engine, the rebuild) computes the
column with the ranking it reads inside its own transaction, and ReportState "advance" records
the ranking the whole column was last recomputed with. The funnel uses the column only while
that equals the current ranking, and otherwise its exact per-entry probe, until `recompute`
has run (enqueued by stage edits, and by the scheduled rollup job).

Concurrency on PostgreSQL: writers read the ranking after taking a share lock on the
"advance" row; `recompute` holds it exclusively, so a writer that read the old ranking has
committed before the recompute reads the history, and later writers read the new one.
SQLite has one writer at a time and fails a write on a stale snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from clm.lifecycle import store
from clm.lifecycle.models import ReportState, Stage, StageChange, StageGroup

ADVANCE = "advance"
MAX_WINDOW_DAYS = 3650  # the longest funnel window a report may ask for
HISTORY = StageChange._meta.db_table
STATES = ReportState._meta.db_table
STAGES = Stage._meta.db_table
BATCH = 20000  # contacts per read in a full recompute


def funnel_ranking(stages: Iterable[tuple[str, int, str]]) -> list[str]:
    """Funnel stage keys by (order, key), from (key, order, group) rows."""
    return [key for key, _order, group in sorted(stages, key=lambda s: (s[1], s[0]))
            if group != StageGroup.LOST]


def signature(ranking: Sequence[str]) -> str:
    return ",".join(ranking)


def ranks_of(ranking: Sequence[str]) -> dict[str, int]:
    """Stage key → rank 1, 2, …; stages not in the funnel are absent (rank 0)."""
    return {key: i + 1 for i, key in enumerate(ranking)}


def current_ranking(*, share_lock: bool = False) -> list[str]:
    """The funnel ranking as stored now (one query; two with `share_lock` on PostgreSQL).

    With `share_lock`, call inside the transaction that writes advance_s (see module doc).
    """
    if share_lock and connection.features.has_select_for_update:
        list(store.fetch(f"SELECT name FROM {STATES} WHERE name = %s FOR SHARE",  # noqa: S608
                         [ADVANCE]))
    cols = ", ".join(store.qn(c) for c in ("key", "order", "group"))
    return funnel_ranking(store.fetch(f"SELECT {cols} FROM {STAGES}"))  # noqa: S608


def seconds_up(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end, rounded up (exact, no float)."""
    delta = end - start
    return delta.days * 86400 + delta.seconds + (1 if delta.microseconds else 0)


def advances(rows: Sequence[tuple[str, datetime, int]], ranks: dict[str, int]
             ) -> list[int | None]:
    """advance_s for one contact's rows (to_stage, at, life), given in seq order."""
    out: list[int | None] = [None] * len(rows)
    get = ranks.get
    for i, (stage, at, life) in enumerate(rows):
        rank = get(stage, 0)
        if not rank:
            continue
        best = None
        for later_stage, later_at, later_life in rows[i + 1:]:
            if later_life == life and get(later_stage, 0) > rank \
                    and (best is None or later_at < best):
                best = later_at
        if best is not None:
            out[i] = seconds_up(at, best)
    return out


def mark_moves(moves: list, ranks: dict[str, int]) -> None:
    """Set `advance_s` on fold Moves (one contact's, in seq order) from these moves alone."""
    if not moves:
        return
    if len(moves) == 1:
        moves[0].advance_s = None
        return
    for move, value in zip(moves, advances([(m.to_stage, m.at, m.life) for m in moves], ranks),
                           strict=True):
        move.advance_s = value


def stored_updates(appended: dict[int, list], ranks: dict[str, int]) -> list[tuple]:
    """(advance_s, contact_id, seq) for stored rows that new moves appended after them reach.

    `appended`: contact id → its new Moves (marked among themselves with `mark_moves`). A
    stored row gets a value only if it has none: a later move cannot enter earlier than the
    rows already stored after it.
    """
    rising = {cid: moves for cid, moves in appended.items()
              if any(ranks.get(m.to_stage, 0) > 1 for m in moves)}
    if not rising:
        return []
    updates = []
    cols = f"contact_id, seq, to_stage, {store.column('at', time=True)}, life, advance_s"
    # By contact only: the (contact, seq) index; the few rows per contact are sifted here.
    for chunk in store.chunks(sorted(rising), 500):
        for cid, seq, stage, at, life, advance in store.fetch(
                f"SELECT {cols} FROM {HISTORY} "  # noqa: S608
                f"WHERE contact_id IN ({store.placeholders(len(chunk))})", chunk):
            rank = ranks.get(stage, 0)
            if advance is not None or not rank:
                continue
            for move in rising[cid]:  # in time order: the first that rises is the earliest
                if move.life == life and ranks.get(move.to_stage, 0) > rank:
                    updates.append((seconds_up(store.aware(at), _aware(move.at)), cid, seq))
                    break
    return updates


def _aware(value: datetime) -> datetime:
    return store.aware(value)


def write_updates(updates: list[tuple]) -> None:
    store.execute_many(f"UPDATE {HISTORY} SET advance_s = %s "  # noqa: S608
                       f"WHERE contact_id = %s AND seq = %s", updates)


def is_current(ranking: Sequence[str], states: dict[str, tuple[str, datetime | None]]) -> bool:
    """Whether the whole advance_s column was computed with `ranking` (see `states`)."""
    stored = states.get(ADVANCE)
    return stored is not None and stored[0] == signature(ranking)


def states() -> dict[str, tuple[str, datetime | None]]:
    """Every ReportState as name → (ranking, refreshed_at) (one query, a handful of rows)."""
    return {name: (ranking, refreshed) for name, ranking, refreshed in
            ReportState.objects.values_list("name", "ranking", "refreshed_at")}


def recompute(*, contact_ids: Sequence[int] | None = None) -> int:
    """Recompute advance_s with the current ranking; returns the rows changed.

    Without `contact_ids`: the whole history, by ranges of contacts each in its own short
    transaction (writers are not held up for the whole run), then ReportState "advance"
    records the ranking if it is still the current one. It starts with a barrier: taking the
    "advance" row exclusively waits for writers that may have read the previous ranking
    (they hold it shared, see the module doc); later writers read the new one. With
    `contact_ids`: only those contacts (rows written by hand, as tests and the benchmark do);
    the recorded ranking is left alone.
    """
    if contact_ids is not None:
        changed = 0
        with transaction.atomic():
            ranks = ranks_of(current_ranking())
            for chunk in store.chunks(sorted(set(contact_ids)), 500):
                changed += _recompute_where(
                    f"contact_id IN ({store.placeholders(len(chunk))})", list(chunk), ranks)
        return changed
    with transaction.atomic():  # the barrier
        ReportState.objects.select_for_update().get_or_create(name=ADVANCE)
        ranking = current_ranking()
    ranks = ranks_of(ranking)
    changed = 0
    (lo, hi), = store.fetch(f"SELECT MIN(contact_id), MAX(contact_id) FROM {HISTORY}")  # noqa: S608
    for start in range(lo, hi + 1, BATCH) if lo is not None else ():
        with transaction.atomic():
            changed += _recompute_where("contact_id >= %s AND contact_id < %s",
                                        [start, start + BATCH], ranks)
    with transaction.atomic():
        state = ReportState.objects.select_for_update().get(name=ADVANCE)
        if current_ranking() == ranking:
            state.ranking = signature(ranking)
            state.refreshed_at = timezone.now()
            state.save()
    return changed


def _recompute_where(where: str, params: list, ranks: dict[str, int]) -> int:
    cols = f"contact_id, seq, to_stage, {store.column('at', time=True)}, life, advance_s"
    updates: list[tuple] = []
    current, rows = None, []

    def flush() -> None:
        values = advances([(r[2], r[3], r[4]) for r in rows], ranks)
        updates.extend((value, r[0], r[1]) for r, value in zip(rows, values, strict=True)
                       if r[5] != value)

    aware = store.aware
    for cid, seq, stage, at, life, old in store.fetch(
            f"SELECT {cols} FROM {HISTORY} WHERE {where} ORDER BY contact_id, seq",  # noqa: S608
            params):
        if cid != current:
            if rows:
                flush()
            current, rows = cid, []
        rows.append((cid, seq, stage, aware(at), life, old))
    if rows:
        flush()
    write_updates(updates)
    return len(updates)
