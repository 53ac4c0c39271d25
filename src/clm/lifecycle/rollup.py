"""The by-source funnel's rollup: entries per contact source, stage, UTC day and days to convert.

The funnel by source needs Contact.source for every entry of the period: joining ~600k history
rows to a million contacts costs seconds on SQLite (a random row lookup per entry), however
the history is indexed. The rollup (FunnelSourceRollup) holds, per (source, entry stage, UTC
day of entry, advance_days), how many entries there were, where advance_days is advance_s in
days rounded up (clm.lifecycle.marks), null when never or beyond the longest window. Any
period of whole days and any window then reads exactly: converted within W days ⇔
advance_days <= W.

It is rebuilt whole by the scheduled job `lifecycle.funnel_rollup` (and on demand by
`services.funnel_rollup_refresh`), from one consistent read of the history; ReportState
"funnel_by_source" records when, and with which funnel ranking. The report gives that time
("as of"), and reads live instead while the rollup is missing or was built with another
ranking (stages reordered since).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.utils import timezone

from clm.lifecycle import marks, store
from clm.lifecycle.models import FunnelSourceRollup, ReportState, StageChange

ROLLUP = "funnel_by_source"
TABLE = FunnelSourceRollup._meta.db_table
HISTORY = StageChange._meta.db_table
COLUMNS = ("source", "stage", "day", "advance_days", "entries")


def _contacts_table() -> str:
    return StageChange._meta.get_field("contact").related_model._meta.db_table


def refresh(*, now: datetime | None = None) -> int:
    """Rebuild the rollup from the whole history; returns its number of rows.

    Recomputes advance_s first if the stages were reordered since it was last computed. The
    history is read without holding a write lock (seconds at a million contacts); the rollup
    and its time are then replaced together in one short transaction, so readers see either
    the old rollup or the new one. `as of` is when the read began.
    """
    now = now or timezone.now()
    ranking = marks.current_ranking()
    if not marks.is_current(ranking, marks.states()):
        marks.recompute()
        ranking = marks.current_ranking()
    outermost = not connection.in_atomic_block
    if connection.vendor == "sqlite":
        # Django opens SQLite transactions IMMEDIATE (the write lock): holding it through
        # seconds of reading would stall every writer. Each read is its own snapshot; a
        # contact created between the two counts under "no source" until the next run.
        rows = _aggregate(ranking)
    else:
        with transaction.atomic():  # one snapshot for both reads (contacts, then history)
            if outermost:
                store.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = _aggregate(ranking)
    with transaction.atomic():
        ReportState.objects.select_for_update().get_or_create(name=ROLLUP)
        if marks.current_ranking() != ranking:
            return 0  # reordered meanwhile: the next run rebuilds by the new order
        store.execute(f"DELETE FROM {TABLE}")  # noqa: S608
        store.insert(TABLE, COLUMNS, rows)
        ReportState.objects.filter(name=ROLLUP).update(ranking=marks.signature(ranking),
                                                       refreshed_at=now)
    return len(rows)


def _aggregate(ranking: list[str]) -> list[tuple]:
    """(source, stage, day, advance_days, entries) over every entry into a funnel stage that
    has a next one (the last funnel stage is no funnel step's entry).

    A hash join in Python: every contact's source (one sequential read), then the entries
    from the covering funnel index. SQLite has no hash join; its nested loop would look up
    one contact row per entry at random (three times slower at a million contacts).
    """
    stages = ranking[:-1]
    if not stages:
        return []
    sources = dict(store.fetch(f"SELECT id, source FROM {_contacts_table()}"))  # noqa: S608
    cap = marks.MAX_WINDOW_DAYS * 86400
    counts: Counter = Counter()
    sqlite = store.is_sqlite()
    at_sql = "substr(a.at, 1, 10)" if sqlite else "a.at"
    for cid, stage, at, advance in store.fetch(
            f"SELECT a.contact_id, a.to_stage, {at_sql}, a.advance_s FROM {HISTORY} a "  # noqa: S608
            f"WHERE a.to_stage IN ({store.placeholders(len(stages))})", stages):
        day = at if sqlite else at.astimezone(UTC).date()
        days = -(-advance // 86400) if advance is not None and advance <= cap else None
        counts[(sources.get(cid, ""), stage, day, days)] += 1
    return [(*key, n) for key, n in counts.items()]


def read(*, start: date, end: date, window_days: int, stages: list[str], ranking: list[str],
         states: dict[str, tuple[str, datetime | None]]
         ) -> tuple[list[tuple], datetime] | None:
    """(rows (stage, source, entered, converted), as of) for entries in [start, end], or None
    when there is no rollup for this ranking (the caller reads live)."""
    state = states.get(ROLLUP)
    if state is None or state[1] is None or state[0] != marks.signature(ranking):
        return None
    adapt = connection.ops.adapt_datefield_value
    sql = (f"SELECT stage, source, SUM(entries), "  # noqa: S608
           f"SUM(CASE WHEN advance_days <= %s THEN entries ELSE 0 END) FROM {TABLE} "
           f"WHERE day >= %s AND day <= %s AND stage IN ({store.placeholders(len(stages))}) "
           f"GROUP BY stage, source")
    with connection.cursor() as cursor:
        cursor.execute(sql, [window_days, adapt(start), adapt(end), *stages])
        rows = [(stage, source, int(entered), int(converted or 0))
                for stage, source, entered, converted in cursor.fetchall()]
    return rows, state[1]
