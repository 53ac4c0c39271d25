"""What the stage history tells: funnel, flows, velocity and stage counts over time.

Every report reads StageChange rows (one row = one visit of a contact to a stage: entered
at `at`, left at `exited_at`, in life `life`) with set-based SQL over covering indexes, then
shapes the few result rows in Python/NumPy. The funnel reads each row's derived `advance_s`
(clm.lifecycle.marks) instead of probing later rows, and by source, for users who see every
contact, a rollup refreshed every 15 minutes (clm.lifecycle.rollup; the report's `as_of`).
Dates are calendar days in UTC; a period [start, end] includes both days. A report for a
user counts only the contacts that user may see.

Definitions (also shown on the pages):
- Funnel: the funnel stages are the prospect and customer stages by `order`. An *entry* is a
  history row entering stage A in the period (a contact entering A in two lives counts twice).
  It *converts* when the same contact, later in the same life, enters the next funnel stage
  or any later one (skipping counts) within `window_days` of entering A.
- Flows: the moves (from → to) made in the period; a move from a lost stage into a customer
  stage starts the contact's next life (a win-back).
- Velocity: time in stage per visit entered in the period. Finished visits give the median and
  p90 of "completed" visits; visits still open are right-censored at now and enter a
  Kaplan-Meier estimate (median and p90 of time in stage with open visits counted as
  "at least this long"), so a stage where many are stuck is not made to look fast.
- Stage counts: how many contacts were in each stage at each month end (the current month:
  now), from the intervals [at, exited_at).
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from django.db import connection
from django.utils import timezone

from clm.core.errors import ValidationFailed
from clm.lifecycle import marks, rollup
from clm.lifecycle.models import Stage, StageChange, StageGroup

TABLE = StageChange._meta.db_table
CONTACT_TABLE = StageChange._meta.get_field("contact").related_model._meta.db_table
DEFAULT_WINDOW_DAYS = 90
DEFAULT_PERIOD_DAYS = 365
MAX_WINDOW_DAYS = marks.MAX_WINDOW_DAYS
MAX_PERIOD_DAYS = 366 * 20
MAX_MONTHS = 120
NO_SOURCE = "(none)"
CENSORING_NOTE = (
    "median/p90: visits that ended (exited_at - at); km_median/km_p90: Kaplan-Meier estimate "
    "with visits still open counted as censored at now (null when fewer than half / a tenth "
    "of the visits have ended)")


# ---------------------------------------------------------------------------- helpers

@dataclass(frozen=True)
class StageInfo:
    key: str
    label: str
    order: int
    group: str


def stage_infos() -> list[StageInfo]:
    """All stages by order (one query)."""
    return [StageInfo(*row) for row in
            Stage.objects.order_by("order", "key").values_list("key", "label", "order", "group")]


def funnel_stages(stages: list[StageInfo]) -> list[StageInfo]:
    """The stages of the funnel: prospect and customer groups, by order."""
    return [s for s in stages if s.group != StageGroup.LOST]


def day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=UTC)


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start day 00:00 UTC, the day after `end` 00:00 UTC)."""
    return day_start(start), day_start(end + timedelta(days=1))


def clean_period(start: date | None, end: date | None) -> tuple[date, date]:
    """Fill in the default period (the last 365 days to today, UTC) and check it.

    Raises ValidationFailed naming `from` when start is after end or the span is too long.
    """
    end = end or timezone.now().astimezone(UTC).date()
    start = start or end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    if start > end:
        raise ValidationFailed("`from` must be on or before `to`.", field="from")
    if (end - start).days >= MAX_PERIOD_DAYS:
        raise ValidationFailed("The period may span at most 20 years.", field="from")
    return start, end


def _sqlite() -> bool:
    return connection.vendor == "sqlite"


def _month(col: str) -> str:
    """SQL for the UTC month 'YYYY-MM' of a datetime column."""
    if _sqlite():
        return f"substr({col}, 1, 7)"  # stored as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    return f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM')"


def _plus_days(col: str) -> str:
    """SQL for `col` + N days, N as the next query parameter (see `_days_param`)."""
    if _sqlite():
        # Same text form as stored values (to the millisecond), so text comparison works.
        return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {col}, %s)"
    return f"({col} + %s)"


def _days_param(days: int):
    return f"+{int(days)} days" if _sqlite() else timedelta(days=days)


def _seconds(start_col: str, end_sql: str) -> str:
    if _sqlite():
        return f"((julianday({end_sql}) - julianday({start_col})) * 86400.0)"
    return f"EXTRACT(EPOCH FROM ({end_sql} - {start_col}))"


def _dt_param(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _scoped(user) -> bool:
    """Whether `user` sees only some contacts (None = an internal caller: sees all)."""
    if user is None:
        return False
    from clm.accounts.models import Scope
    from clm.accounts.queries import user_scope

    return user_scope(user) != Scope.ALL


def _scope(user, source: str | None, *, join: bool = False) -> tuple[str, str, list]:
    """(JOIN, WHERE, params) limiting history rows `a` to contacts the user may see.

    With `join`, contacts are joined as `c` (for c.source). `source` keeps the contacts with
    that source, through the contacts' source index (cheaper than joining every row).
    No user = no visibility limit (internal callers, the bench).
    """
    join_sql, where, params = "", "", []
    if join:
        join_sql = f" JOIN {CONTACT_TABLE} c ON c.id = a.contact_id"
    if source is not None:
        where += f" AND a.contact_id IN (SELECT id FROM {CONTACT_TABLE} WHERE source = %s)"  # noqa: S608
        params.append(source)
    if _scoped(user):
        from clm.customers.queries import contacts_visible

        sql, sub = contacts_visible(user).values("pk").query.sql_with_params()
        where += f" AND a.contact_id IN ({sql})"
        params += list(sub)
    return join_sql, where, params


def _rank_case(col: str, ranks: dict[str, int]) -> tuple[str, list]:
    parts, params = [], []
    for key, rank in ranks.items():
        parts.append("WHEN %s THEN %s")
        params += [key, rank]
    return f"(CASE {col} {' '.join(parts)} ELSE 0 END)", params


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _months_between(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# ---------------------------------------------------------------------------- funnel

@dataclass
class FunnelStep:
    from_stage: str
    to_stage: str
    entered: int = 0
    converted: int = 0

    @property
    def rate(self) -> float | None:
        return self.converted / self.entered if self.entered else None


@dataclass
class FunnelGroup:
    key: str
    steps: list[FunnelStep]
    maturing: bool = False  # some entries' windows are still open: the rate may still rise

    @property
    def entries(self) -> int:
        """Entries into any funnel stage (the group's size, for ordering)."""
        return sum(s.entered for s in self.steps)


@dataclass
class FunnelReport:
    start: date
    end: date
    window_days: int
    by: str
    stages: list[StageInfo]
    steps: list[FunnelStep]
    groups: list[FunnelGroup] = field(default_factory=list)
    as_of: datetime | None = None  # figures from the rollup refreshed then; None = live


def funnel(*, start: date, end: date, window_days: int = DEFAULT_WINDOW_DAYS,
           by: str = "cohort", source: str | None = None, user=None,
           now: datetime | None = None) -> FunnelReport:
    """Conversion from each funnel stage to the next within `window_days`, by cohort or source.

    Entries into stage A during [start, end]; converted = the same contact entered the next
    funnel stage or a later one, after this entry, in the same life, within the window.
    `by="cohort"` groups by the UTC month of entry into A; `by="source"` by Contact.source.

    Live and exact from StageChange.advance_s (clm.lifecycle.marks) over the covering funnel
    index: one range count per stage and month. While advance_s is being recomputed after a
    change of stage order, the exact per-entry probe of the contact's later rows instead.
    By source for a user who sees every contact (no source filter): from the rollup
    (clm.lifecycle.rollup), exact as of its last refresh, which `as_of` gives (None = live).
    Three queries (stages, report states, figures), plus the user's scope.
    """
    if by not in ("cohort", "source"):
        raise ValueError("by must be 'cohort' or 'source'")
    now = now or timezone.now()
    stages = stage_infos()
    fstages = funnel_stages(stages)
    pairs = list(itertools.pairwise(fstages))
    report = FunnelReport(start=start, end=end, window_days=window_days, by=by,
                          stages=fstages,
                          steps=[FunnelStep(a.key, b.key) for a, b in pairs])
    if not pairs:
        return report
    ranking = [s.key for s in fstages]
    entry_stages = [a.key for a, _ in pairs]
    lo, hi = period_bounds(start, end)
    states = marks.states()
    scoped = _scoped(user)
    exact_marks = marks.is_current(ranking, states)
    rows = None
    if by == "source" and source is None and not scoped and exact_marks:
        found = rollup.read(start=start, end=end, window_days=window_days, stages=entry_stages,
                            ranking=ranking, states=states)
        if found is not None:
            rows, report.as_of = found
    if rows is None:
        rows = _funnel_rows(by=by, stages=entry_stages, lo=lo, hi=hi, window_days=window_days,
                            source=source, user=user if scoped else None,
                            exact_marks=exact_marks, ranks=marks.ranks_of(ranking))
    index = {a.key: i for i, (a, _) in enumerate(pairs)}
    groups: dict[str, FunnelGroup] = {}
    for stage, key, entered, converted in rows:
        if by == "source":
            key = key or NO_SOURCE
        group = groups.get(key)
        if group is None:
            group = groups[key] = FunnelGroup(key, [FunnelStep(a.key, b.key) for a, b in pairs])
        i = index[stage]
        group.steps[i].entered += entered
        group.steps[i].converted += int(converted or 0)
        report.steps[i].entered += entered
        report.steps[i].converted += int(converted or 0)
    window = timedelta(days=window_days)
    for key, group in groups.items():
        if by == "cohort":
            y, m = int(key[:4]), int(key[5:7])
            month_end = day_start(date(y, m, calendar.monthrange(y, m)[1]) + timedelta(days=1))
            group.maturing = min(month_end, hi) + window > now
        else:
            group.maturing = hi + window > now
    report.groups = sorted(groups.values(), key=lambda g: g.key if by == "cohort"
                           else (-g.entries, g.key))
    return report


def _funnel_rows(*, by: str, stages: list[str], lo: datetime, hi: datetime, window_days: int,
                 source: str | None, user, exact_marks: bool, ranks: dict[str, int]
                 ) -> list[tuple]:
    """(entry stage, group key, entered, converted) rows, from the history itself."""
    if not exact_marks:
        return _fetch(*_funnel_probe_sql(by=by, stages=stages, lo=lo, hi=hi,
                                         window_days=window_days, source=source, user=user,
                                         ranks=ranks))
    if by == "cohort" and source is None and user is None:
        return _funnel_cohort_ranges(stages=stages, lo=lo, hi=hi, window_days=window_days)
    join, visible_sql, visible_params = _scope(user, source, join=by == "source")
    group_sql = _month("a.at") if by == "cohort" else "c.source"
    sql = (f"SELECT a.to_stage, {group_sql}, COUNT(*), "  # noqa: S608 - fixed SQL, values are params
           f"SUM(CASE WHEN a.advance_s <= %s THEN 1 ELSE 0 END) FROM {TABLE} a{join} "
           f"WHERE a.to_stage IN ({_marks(stages)}) AND a.at >= %s AND a.at < %s{visible_sql} "
           f"GROUP BY a.to_stage, {group_sql}")
    return _fetch(sql, [window_days * 86400, *stages, _dt_param(lo), _dt_param(hi),
                        *visible_params])


def _funnel_cohort_ranges(*, stages: list[str], lo: datetime, hi: datetime,
                          window_days: int) -> list[tuple]:
    """By cohort month, every contact: one range count per month over the funnel index.

    A GROUP BY on the month would sort every entry (SQLite has no hash aggregate); ranges of
    the index (to_stage, at, advance_s, …) come out already grouped.
    """
    parts, params = [], []
    bounds = _month_bounds(lo, hi)
    for month, m_lo, m_hi in bounds:
        parts.append(
            f"SELECT a.to_stage, %s, COUNT(*), "  # noqa: S608
            f"SUM(CASE WHEN a.advance_s <= %s THEN 1 ELSE 0 END) FROM {TABLE} a "
            f"WHERE a.to_stage IN ({_marks(stages)}) AND a.at >= %s AND a.at < %s "
            f"GROUP BY a.to_stage")
        params += [month, window_days * 86400, *stages, _dt_param(m_lo), _dt_param(m_hi)]
    return _fetch(" UNION ALL ".join(parts), params) if parts else []


def _month_bounds(lo: datetime, hi: datetime) -> list[tuple[str, datetime, datetime]]:
    """('YYYY-MM', from, to) for each UTC month meeting [lo, hi), clipped to it."""
    out = []
    y, m = lo.year, lo.month
    while True:
        first = datetime(y, m, 1, tzinfo=UTC)
        if first >= hi:
            return out
        y2, m2 = (y + 1, 1) if m == 12 else (y, m + 1)
        nxt = datetime(y2, m2, 1, tzinfo=UTC)
        out.append((f"{y:04d}-{m:02d}", max(first, lo), min(nxt, hi)))
        y, m = y2, m2


def _funnel_probe_sql(*, by: str, stages: list[str], lo: datetime, hi: datetime,
                      window_days: int, source: str | None, user, ranks: dict[str, int]
                      ) -> tuple[str, list]:
    """The funnel without advance_s: a correlated EXISTS probe of the contact's later rows.

    Exact whatever advance_s holds (used while it is recomputed, and by the tests as the
    reference); seconds per year of history at a million contacts.
    """
    rank_a, pa = _rank_case("a.to_stage", ranks)
    rank_b, pb = _rank_case("b.to_stage", ranks)
    join, visible_sql, visible_params = _scope(user, source, join=by == "source")
    group_sql = _month("a.at") if by == "cohort" else "c.source"
    sql = (
        f"SELECT a.to_stage, {group_sql}, COUNT(*), "  # noqa: S608 - fixed SQL, values are params
        # Still in A, or left it after the window: no later row can be inside the window,
        # so the probe of the contact's later rows is skipped (exact, and most entries).
        f"SUM(CASE WHEN a.exited_at IS NULL OR a.exited_at > {_plus_days('a.at')} THEN 0 "
        f"WHEN EXISTS (SELECT 1 FROM {TABLE} b WHERE b.contact_id = a.contact_id "
        f"AND b.seq > a.seq AND b.life = a.life AND {rank_b} > {rank_a} "
        f"AND b.at <= {_plus_days('a.at')}) THEN 1 ELSE 0 END) "
        f"FROM {TABLE} a{join} "
        f"WHERE a.to_stage IN ({_marks(stages)}) AND a.at >= %s AND a.at < %s{visible_sql} "
        f"GROUP BY a.to_stage, {group_sql}")
    params = [_days_param(window_days), *pb, *pa, _days_param(window_days), *stages,
              _dt_param(lo), _dt_param(hi), *visible_params]
    return sql, params


def _marks(values: list) -> str:
    return ", ".join(["%s"] * len(values))


# ---------------------------------------------------------------------------- flows

@dataclass
class Flow:
    from_stage: str  # "" = first entry (a contact's first stage)
    to_stage: str
    count: int
    kind: str  # entry | forward | backward | loss | win-back

    @property
    def is_loop(self) -> bool:
        return self.kind in ("backward", "win-back")


@dataclass
class FlowReport:
    start: date
    end: date
    stages: list[StageInfo]
    flows: list[Flow]

    @property
    def forward(self) -> list[Flow]:
        return [f for f in self.flows if not f.is_loop]

    @property
    def loops(self) -> list[Flow]:
        return [f for f in self.flows if f.is_loop]

    @property
    def total(self) -> int:
        return sum(f.count for f in self.flows)


def flow_kind(frm: StageInfo | None, to: StageInfo | None) -> str:
    if frm is None:
        return "entry"
    if to is None:
        return "forward"
    if frm.group == StageGroup.LOST and to.group == StageGroup.CUSTOMER:
        return "win-back"  # starts the next life
    if to.group == StageGroup.LOST and frm.group != StageGroup.LOST:
        return "loss"
    return "forward" if to.order > frm.order else "backward"


def flows(*, start: date, end: date, source: str | None = None, user=None) -> FlowReport:
    """Moves made during [start, end], counted per (from, to), largest first. Two queries."""
    stages = stage_infos()
    by_key = {s.key: s for s in stages}
    lo, hi = period_bounds(start, end)
    join, visible_sql, visible_params = _scope(user, source)
    sql = (f"SELECT a.from_stage, a.to_stage, COUNT(*) FROM {TABLE} a{join} "  # noqa: S608
           f"WHERE a.at >= %s AND a.at < %s{visible_sql} GROUP BY a.from_stage, a.to_stage")
    rows = _fetch(sql, [_dt_param(lo), _dt_param(hi), *visible_params])
    items = [Flow(frm, to, n, flow_kind(by_key.get(frm) if frm else None, by_key.get(to)))
             for frm, to, n in rows]
    items.sort(key=lambda f: (-f.count, f.from_stage, f.to_stage))
    return FlowReport(start=start, end=end, stages=stages, flows=items)


# ---------------------------------------------------------------------------- velocity

@dataclass
class StageVelocity:
    stage: str
    label: str
    visits: int
    completed: int
    open: int
    median_s: float | None  # completed visits only
    p90_s: float | None
    km_median_s: float | None  # Kaplan-Meier, open visits censored at now
    km_p90_s: float | None
    mean_s: float | None


@dataclass
class VelocityReport:
    start: date
    end: date
    stages: list[StageVelocity]


def km_quantile(durations: np.ndarray, finished: np.ndarray, q: float) -> float | None:
    """Smallest time t where the Kaplan-Meier survival S(t) <= 1 - q (None if never)."""
    if durations.size == 0:
        return None
    times, inverse = np.unique(durations, return_inverse=True)
    total = np.bincount(inverse)
    deaths = np.bincount(inverse, weights=finished.astype(float))
    at_risk = durations.size - np.concatenate(([0], np.cumsum(total)[:-1]))
    survival = np.cumprod(1.0 - deaths / at_risk)
    hit = np.nonzero(survival <= 1.0 - q + 1e-12)[0]
    return float(times[hit[0]]) if hit.size else None


def velocity(*, start: date, end: date, source: str | None = None, user=None,
             now: datetime | None = None) -> VelocityReport:
    """Median and p90 time in each stage for visits entered during [start, end].

    One query fetching (stage rank, seconds, finished) per visit — narrow numbers, not
    datetimes — then NumPy per stage.
    """
    now = now or timezone.now()
    stages = stage_infos()
    ranks = {s.key: i + 1 for i, s in enumerate(stages)}
    lo, hi = period_bounds(start, end)
    rank_sql, rank_params = _rank_case("a.to_stage", ranks)
    join, visible_sql, visible_params = _scope(user, source)
    # Visits of the known stages only (no other is reported): ranges of the covering
    # funnel index instead of the table.
    sql = (f"SELECT {rank_sql}, {_seconds('a.at', 'COALESCE(a.exited_at, %s)')}, "  # noqa: S608
           f"CASE WHEN a.exited_at IS NULL THEN 0 ELSE 1 END "
           f"FROM {TABLE} a{join} WHERE a.to_stage IN ({_marks(list(ranks))}) "
           f"AND a.at >= %s AND a.at < %s{visible_sql}")
    params = [*rank_params, _dt_param(now), *ranks, _dt_param(lo), _dt_param(hi),
              *visible_params]
    rows = _fetch(sql, params)
    data = np.array(rows, dtype=float).reshape(-1, 3)
    rank_col, secs, finished = data[:, 0].astype(int), np.maximum(data[:, 1], 0.0), data[:, 2]
    # Stored times are exact to the microsecond; float day arithmetic is not: round to 1 ms.
    secs = np.round(secs, 3)
    out = []
    for stage in stages:
        mask = rank_col == ranks[stage.key]
        d, f = secs[mask], finished[mask] > 0
        done = d[f]
        median, p90 = (np.percentile(done, [50, 90]) if done.size else (None, None))
        out.append(StageVelocity(
            stage=stage.key, label=stage.label, visits=int(d.size), completed=int(done.size),
            open=int(d.size - done.size),
            median_s=None if median is None else float(median),
            p90_s=None if p90 is None else float(p90),
            km_median_s=km_quantile(d, f, 0.5), km_p90_s=km_quantile(d, f, 0.9),
            mean_s=float(done.mean()) if done.size else None))
    return VelocityReport(start=start, end=end, stages=out)


# ---------------------------------------------------------------------------- stage counts

@dataclass
class StageCountsReport:
    months: list[str]  # 'YYYY-MM', oldest first; the last is the current month (as of now)
    stages: list[StageInfo]
    counts: dict[str, list[int]]  # stage key -> count at each month end


def stage_counts(*, months: int = 12, source: str | None = None, user=None,
                 now: datetime | None = None) -> StageCountsReport:
    """How many contacts were in each stage at the end of each of the last `months` months.

    In stage X at instant T ⇔ a row entered X at or before T and had not exited by T. Counted
    as entries minus exits up to each month end, from two GROUP BY queries (stage, month).
    """
    now = now or timezone.now()
    now_utc = now.astimezone(UTC)
    stages = stage_infos()
    last = f"{now_utc.year:04d}-{now_utc.month:02d}"
    y, m = now_utc.year, now_utc.month - (months - 1)
    while m < 1:
        y, m = y - 1, m + 12
    shown = _months_between(f"{y:04d}-{m:02d}", last)
    join, visible_sql, visible_params = _scope(user, source)
    upto = _dt_param(now)
    entries = _fetch(
        f"SELECT a.to_stage, {_month('a.at')}, COUNT(*) FROM {TABLE} a{join} "  # noqa: S608
        f"WHERE a.at <= %s{visible_sql} GROUP BY a.to_stage, {_month('a.at')}",
        [upto, *visible_params])
    exits = _fetch(
        f"SELECT a.to_stage, {_month('a.exited_at')}, COUNT(*) FROM {TABLE} a{join} "  # noqa: S608
        f"WHERE a.exited_at <= %s{visible_sql} GROUP BY a.to_stage, {_month('a.exited_at')}",
        [upto, *visible_params])
    pos = {mo: i for i, mo in enumerate(shown)}
    keys = [s.key for s in stages] + sorted({r[0] for r in entries} - {s.key for s in stages})
    delta = {k: np.zeros(len(shown), dtype=np.int64) for k in keys}
    for rows, sign in ((entries, 1), (exits, -1)):
        for stage, month, n in rows:
            # Before the first month shown: part of the first month end's count.
            i = 0 if month < shown[0] else pos.get(month)
            if i is not None:
                delta[stage][i] += sign * n
    counts = {k: [int(v) for v in np.cumsum(d)] for k, d in delta.items()}
    return StageCountsReport(months=shown, stages=stages, counts=counts)
