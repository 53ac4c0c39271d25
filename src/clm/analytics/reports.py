"""Reports: cohorts, revenue, churn, CLV distribution, RFM grid, customers worth saving.

Every report is one or two SQL aggregates (GROUP BY cohort and month, …) over narrow
tables kept by the analytics app: PurchaseMonth (a contact's purchases per month),
ActivityMonth (months with any event), PurchaseSummary and ContactScore. No per-contact
Python. Months are integers, year * 12 + month - 1 (see PurchaseMonth); purchase months are
those of the local purchase day, activity and sign-up months are in UTC. The current month
is included as far as it has gone.

Definitions:

* Repeat-purchase cohorts: customers grouped by the month of their first purchase; cell
  (cohort, k) = customers of the cohort who bought in the k-th month after it (k = 0 is the
  first month, always 100 %).
* Activity cohorts: contacts grouped by the month they were created; cell (cohort, k) =
  contacts of the cohort with any timeline event in the k-th month after it.
* Revenue retention: revenue of a purchase cohort in the k-th month, as a percentage of its
  revenue in month 0.
* Monthly churn rate of month m: among customers who bought in month m - 1, the share who did
  not buy in month m (churned / active the month before).

Business-wide reports are cached (CLM_ANALYTICS_REPORT_CACHE_SECONDS, default 300 s; a new
refresh starts afresh); the list of customers worth saving is per user and never cached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Max, QuerySet, Sum
from django.utils import timezone

from clm.analytics import queries
from clm.analytics.derived import Derived
from clm.analytics.models import (
    ActivityMonth,
    ContactScore,
    PurchaseMonth,
    PurchaseSummary,
    RefreshRun,
)
from clm.analytics.summary import month_index
from clm.customers.models import Contact

MAX_MONTHS = 60


def month_of(day: date) -> int:
    """The month number of `day` (year * 12 + month - 1)."""
    return day.year * 12 + day.month - 1


def month_label(month: int) -> str:
    """'YYYY-MM' of a month number."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def _month_start(month: int) -> datetime:
    return timezone.make_aware(datetime.combine(date(month // 12, month % 12 + 1, 1), time.min),
                               timezone.get_default_timezone())


def _current_month(today: date | None) -> int:
    return month_of(today or timezone.localdate())


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _cached(name: str, args: tuple, compute: Callable[[], Any]) -> Any:
    """compute(), cached per report, arguments and current model run."""
    seconds = int(getattr(settings, "CLM_ANALYTICS_REPORT_CACHE_SECONDS", 300))
    if seconds <= 0:
        return compute()
    run = RefreshRun.objects.filter(status=RefreshRun.Status.DONE).aggregate(m=Max("pk"))["m"]
    key = f"clm:analytics:{name}:{':'.join(map(str, args))}:{run}"
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, seconds)
    return value


# --------------------------------------------------------------------------------------
# Cohorts
# --------------------------------------------------------------------------------------

@dataclass
class CohortTable:
    """Rows = cohorts (oldest first), columns = months since the cohort month (0, 1, …).

    `values[i][k]` is a count (or revenue); `percent[i][k]` its share of the cohort's size (of
    month-0 revenue for revenue retention); None where month k has not come yet.
    """

    kind: str
    cohorts: list[str]
    sizes: list[float]
    offsets: list[int]
    values: list[list[float | None]]
    percent: list[list[float | None]]

    def as_dict(self) -> dict:
        return asdict(self)


def _cohort_table(kind: str, first: int, last: int, cells: dict[tuple[int, int], float],
                  sizes: dict[int, float]) -> CohortTable:
    cohorts = list(range(first, last + 1))
    offsets = list(range(0, last - first + 1))
    values, percent = [], []
    for c in cohorts:
        size = sizes.get(c, 0)
        row_v, row_p = [], []
        for k in offsets:
            if c + k > last:
                row_v.append(None)
                row_p.append(None)
                continue
            v = cells.get((c, k), 0)
            row_v.append(round(float(v), 2))
            row_p.append(round(100.0 * float(v) / float(size), 1) if size else None)
        values.append(row_v)
        percent.append(row_p)
    return CohortTable(kind=kind, cohorts=[month_label(c) for c in cohorts],
                       sizes=[round(float(sizes.get(c, 0)), 2) for c in cohorts],
                       offsets=offsets, values=values, percent=percent)


def _purchase_cells(first: int) -> list[tuple[int, int, int, float]]:
    """(cohort, offset, customers, revenue) for purchase cohorts from month `first` on."""
    cohort = month_index("s.first_purchase_on")
    real = "DOUBLE PRECISION" if connection.vendor == "postgresql" else "REAL"
    sql = f"""
        SELECT {cohort}, pm.month - {cohort}, COUNT(*), CAST(SUM(pm.revenue) AS {real})
        FROM {PurchaseMonth._meta.db_table} pm
        JOIN {PurchaseSummary._meta.db_table} s ON s.contact_id = pm.contact_id
        WHERE pm.month >= %s AND s.first_purchase_on >= %s
        GROUP BY {cohort}, pm.month - {cohort}
    """  # noqa: S608 - table names from the models, values bound
    start = date(first // 12, first % 12 + 1, 1)
    return _rows(sql, [first, connection.ops.adapt_datefield_value(start)])


def purchase_cohorts(*, months: int = 12, today: date | None = None) -> CohortTable:
    """Repeat-purchase retention of the last `months` first-purchase cohorts."""
    last = _current_month(today)
    first = last - months + 1

    def compute() -> CohortTable:
        rows = _purchase_cells(first)
        cells = {(c, k): n for c, k, n, _ in rows}
        sizes = {c: n for c, k, n, _ in rows if k == 0}
        return _cohort_table("purchase", first, last, cells, sizes)

    return _cached("purchase_cohorts", (months, last), compute)


def revenue_retention(*, months: int = 12, today: date | None = None) -> CohortTable:
    """Revenue of the last `months` first-purchase cohorts by month, as % of month 0."""
    last = _current_month(today)
    first = last - months + 1

    def compute() -> CohortTable:
        rows = _purchase_cells(first)
        cells = {(c, k): r for c, k, _, r in rows}
        sizes = {c: r for c, k, _, r in rows if k == 0}
        return _cohort_table("revenue", first, last, cells, sizes)

    return _cached("revenue_retention", (months, last), compute)


def activity_cohorts(*, months: int = 12, today: date | None = None) -> CohortTable:
    """Activity (any event) of the contacts created in each of the last `months` months."""
    last = _current_month(today)
    first = last - months + 1

    def compute() -> CohortTable:
        cohort = month_index("c.created_at")
        since = connection.ops.adapt_datetimefield_value(_month_start(first))
        contacts = Contact._meta.db_table
        sizes = dict(_rows(
            f"SELECT {cohort}, COUNT(*) FROM {contacts} c WHERE c.created_at >= %s "  # noqa: S608
            f"GROUP BY {cohort}", [since]))
        rows = _rows(f"""
            SELECT {cohort}, am.month - {cohort}, COUNT(*)
            FROM {ActivityMonth._meta.db_table} am JOIN {contacts} c ON c.id = am.contact_id
            WHERE am.month >= %s AND c.created_at >= %s AND am.month >= {cohort}
            GROUP BY {cohort}, am.month - {cohort}""", [first, since])  # noqa: S608
        cells = {(c, k): n for c, k, n in rows}
        return _cohort_table("activity", first, last, cells, sizes)

    return _cached("activity_cohorts", (months, last), compute)


COHORT_REPORTS = {"purchase": purchase_cohorts, "activity": activity_cohorts,
                  "revenue": revenue_retention}


# --------------------------------------------------------------------------------------
# Revenue and churn by month
# --------------------------------------------------------------------------------------

@dataclass
class MonthSeries:
    months: list[str]
    columns: dict[str, list[float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def revenue_by_month(*, months: int = 24, today: date | None = None) -> MonthSeries:
    """Revenue and paying customers per month, the last `months` months."""
    last = _current_month(today)
    first = last - months + 1

    def compute() -> MonthSeries:
        rows = {m: (float(r or 0), n) for m, r, n in
                PurchaseMonth.objects.filter(month__gte=first, month__lte=last)
                .values("month").annotate(r=Sum("revenue"), n=Count("id"))
                .values_list("month", "r", "n").order_by()}
        span = range(first, last + 1)
        return MonthSeries(months=[month_label(m) for m in span], columns={
            "revenue": [round(rows.get(m, (0.0, 0))[0], 2) for m in span],
            "customers": [rows.get(m, (0.0, 0))[1] for m in span]})

    return _cached("revenue_by_month", (months, last), compute)


def churn_by_month(*, months: int = 12, today: date | None = None) -> MonthSeries:
    """Monthly churn rate (see the module's definitions) for the last `months` months."""
    last = _current_month(today)
    first = last - months + 1

    def compute() -> MonthSeries:
        table = PurchaseMonth._meta.db_table
        rows = _rows(f"""
            SELECT a.month + 1, COUNT(*), SUM(CASE WHEN b.id IS NULL THEN 1 ELSE 0 END)
            FROM {table} a LEFT JOIN {table} b
              ON b.contact_id = a.contact_id AND b.month = a.month + 1
            WHERE a.month >= %s AND a.month < %s
            GROUP BY a.month""", [first - 1, last])  # noqa: S608 - model table names
        by_month = {m: (n, c) for m, n, c in rows}
        span = range(first, last + 1)
        active = [by_month.get(m, (0, 0))[0] for m in span]
        churned = [by_month.get(m, (0, 0))[1] for m in span]
        rate = [round(100.0 * c / a, 1) if a else None for a, c in zip(active, churned, strict=True)]
        return MonthSeries(months=[month_label(m) for m in span], columns={
            "active_previous_month": active, "churned": churned, "churn_rate_percent": rate})

    return _cached("churn_by_month", (months, last), compute)


# --------------------------------------------------------------------------------------
# Scores: CLV distribution, RFM grid, customers worth saving
# --------------------------------------------------------------------------------------

def _nice_width(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^k at least `raw`."""
    if raw <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * exp:
            return step * exp
    return 10 * exp  # pragma: no cover - the loop always returns


@dataclass
class Histogram:
    labels: list[str]
    lower: list[float]
    counts: list[int]
    width: float
    total: int

    def as_dict(self) -> dict:
        return asdict(self)


def clv_distribution(*, bins: int = 20) -> Histogram:
    """Predicted CLV in `bins` equal bins from 0 up to about the 99th percentile; the last bin
    holds everyone above.
    """
    def compute() -> Histogram:
        scored = ContactScore.objects.filter(predicted_clv__isnull=False)
        total = scored.count()
        if not total:
            return Histogram(labels=[], lower=[], counts=[], width=0.0, total=0)
        p99 = scored.order_by("-predicted_clv").values_list(
            "predicted_clv", flat=True)[total // 100]
        width = _nice_width(max(p99, 1e-9) / (bins - 1))
        if connection.vendor == "postgresql":
            bucket = "LEAST(CAST(FLOOR(predicted_clv / %s) AS INTEGER), %s)"
        else:  # CAST truncates, which is FLOOR for CLV >= 0
            bucket = "MIN(CAST(predicted_clv / %s AS INTEGER), %s)"
        rows = dict(_rows(f"""
            SELECT {bucket}, COUNT(*)
            FROM {ContactScore._meta.db_table} WHERE predicted_clv IS NOT NULL
            GROUP BY 1""", [width, bins - 1]))  # noqa: S608 - model table name
        lower = [round(i * width, 2) for i in range(bins)]
        labels = [f"{lo:g}-{lo + width:g}" for lo in lower[:-1]] + [f"≥ {lower[-1]:g}"]
        return Histogram(labels=labels, lower=lower,
                         counts=[int(rows.get(i, 0)) for i in range(bins)], width=width,
                         total=total)

    return _cached("clv_distribution", (bins,), compute)


def rfm_grid() -> dict:
    """Customers by R score (rows 5..1) and F score (columns 1..5), and by named segment."""
    def compute() -> dict:
        counts = {(r, f): n for r, f, n in ContactScore.objects.filter(rfm_r__isnull=False)
                  .values("rfm_r", "rfm_f").annotate(n=Count("pk"))
                  .values_list("rfm_r", "rfm_f", "n").order_by()}
        segments = dict(ContactScore.objects.exclude(rfm_segment="").values("rfm_segment")
                        .annotate(n=Count("pk")).values_list("rfm_segment", "n").order_by())
        r_scores, f_scores = [5, 4, 3, 2, 1], [1, 2, 3, 4, 5]
        return {"r": r_scores, "f": f_scores,
                "counts": [[counts.get((r, f), 0) for f in f_scores] for r in r_scores],
                "segments": segments}

    return _cached("rfm_grid", (), compute)


def stage_counts() -> list[dict]:
    """Contacts per lifecycle stage, in the stages' order (unknown or empty stages last)."""
    from clm.lifecycle.models import Stage

    def compute() -> list[dict]:
        counts = dict(Contact.objects.values("stage").annotate(n=Count("pk"))
                      .values_list("stage", "n").order_by())
        out = [{"stage": key, "label": label, "contacts": counts.pop(key, 0)}
               for key, label in Stage.objects.order_by("order", "key").values_list("key", "label")]
        out += [{"stage": key, "label": key or "(none)", "contacts": n}
                for key, n in sorted(counts.items())]
        return out

    return _cached("stage_counts", (), compute)


def at_risk(user, *, limit: int = 20) -> QuerySet[ContactScore]:
    """The customers most worth saving now that `user` may see: highest predicted CLV times
    churn risk (1 - P(alive)) first. One query (contact included).
    """
    return (queries.scores_visible(user).filter(value_at_risk__gt=0)
            .select_related("contact").order_by("-value_at_risk", "contact_id")[:limit])


def dashboard_summary() -> dict:
    """Headline figures: contacts, customers, revenue, CLV, P(alive), value at risk."""
    def compute() -> dict:
        since = month_of(timezone.localdate()) - 11
        buyers = PurchaseSummary.objects.aggregate(n=Count("pk"), revenue=Sum("total_amount"))
        recent = PurchaseMonth.objects.filter(month__gte=since).aggregate(r=Sum("revenue"))
        scores = ContactScore.objects.filter(predicted_clv__isnull=False).aggregate(
            # Value at risk is derived on read (aggregates take its expression, not the
            # manager's alias); no result may be named like a column it reads.
            clv=Sum("predicted_clv"), avg_clv=Avg("predicted_clv"), avg_p=Avg("p_alive"),
            risk=Sum(Derived("value_at_risk")))
        run = queries.current_run()
        return {
            "contacts": Contact.objects.count(),
            "customers": buyers["n"],
            "revenue_total": float(buyers["revenue"] or 0),
            "revenue_last_12_months": float(recent["r"] or 0),
            "predicted_clv_total": round(scores["clv"] or 0, 2),
            "predicted_clv_average": round(scores["avg_clv"] or 0, 2),
            "p_alive_average": round(scores["avg_p"] or 0, 4),
            "value_at_risk_total": round(scores["risk"] or 0, 2),
            "scores_as_of": run.as_of if run else None,
            "model_run_id": run.pk if run else None,
        }

    return _cached("dashboard_summary", (timezone.localdate(),), compute)

