"""Analytics report endpoints (mounted on the analytics router under /api/v1/analytics).

Definitions of each report: clm.analytics.reports. Every endpoint needs the permission to
view scores (analytics.view_contactscore); the at-risk list also shows only contacts the
caller may see.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from ninja import Query, Router, Schema
from pydantic import Field

from clm.analytics import reports

reports_router = Router(tags=["analytics"])

VIEW_PERMISSION = "analytics.view_contactscore"


def _require(request, *perms: str) -> None:
    from clm.core.errors import PermissionDenied

    if not request.user.has_perms(perms):
        raise PermissionDenied()


class CohortOut(Schema):
    kind: str
    cohorts: list[str] = Field(description="Cohort months, YYYY-MM, oldest first.")
    sizes: list[float] = Field(description="Customers (contacts; month-0 revenue) per cohort.")
    offsets: list[int] = Field(description="Months since the cohort month.")
    values: list[list[float | None]]
    percent: list[list[float | None]]


class MonthSeriesOut(Schema):
    months: list[str]
    columns: dict[str, list[float | None]]


class HistogramOut(Schema):
    labels: list[str]
    lower: list[float]
    counts: list[int]
    width: float
    total: int


class RfmGridOut(Schema):
    r: list[int]
    f: list[int]
    counts: list[list[int]] = Field(description="counts[i][j]: R = r[i], F = f[j].")
    segments: dict[str, int]


class StageCountOut(Schema):
    stage: str
    label: str
    contacts: int


class AtRiskOut(Schema):
    contact_id: int
    name: str
    predicted_clv: float
    p_alive: float
    churn_risk: float
    value_at_risk: float
    rfm_segment: str
    last_purchase_on: date | None


class DashboardOut(Schema):
    contacts: int
    customers: int
    revenue_total: float
    revenue_last_12_months: float
    predicted_clv_total: float
    predicted_clv_average: float
    p_alive_average: float
    value_at_risk_total: float
    scores_as_of: date | None
    model_run_id: int | None


class CohortQuery(Schema):
    kind: Literal["purchase", "activity", "revenue"] = "purchase"
    months: int = Field(12, ge=1, le=reports.MAX_MONTHS)


class MonthsQuery(Schema):
    months: int = Field(12, ge=1, le=reports.MAX_MONTHS)


class BinsQuery(Schema):
    bins: int = Field(20, ge=2, le=100)


class LimitQuery(Schema):
    limit: int = Field(20, ge=1, le=100)


def at_risk_rows(user, limit: int) -> list[dict]:
    """The at-risk list as plain rows (shared with the dashboard page and its CSV)."""
    return [{"contact_id": s.contact_id, "name": s.contact.display_name,
             "predicted_clv": s.predicted_clv, "p_alive": s.p_alive, "churn_risk": s.churn_risk,
             "value_at_risk": s.value_at_risk, "rfm_segment": s.rfm_segment,
             "last_purchase_on": s.last_purchase_on}
            for s in reports.at_risk(user, limit=limit)]


@reports_router.get("/cohorts", response=CohortOut)
def cohorts(request, q: Query[CohortQuery]):
    """Cohort retention: kind=purchase (repeat purchase by first-purchase month), activity
    (any event by month created) or revenue (revenue retention, % of month 0).
    """
    _require(request, VIEW_PERMISSION)
    return reports.COHORT_REPORTS[q.kind](months=q.months).as_dict()


@reports_router.get("/revenue", response=MonthSeriesOut)
def revenue(request, q: Query[MonthsQuery]):
    """Revenue and paying customers per month (columns revenue, customers)."""
    _require(request, VIEW_PERMISSION)
    return reports.revenue_by_month(months=q.months).as_dict()


@reports_router.get("/churn", response=MonthSeriesOut)
def churn(request, q: Query[MonthsQuery]):
    """Monthly churn rate: of the customers who bought in the month before, the share who did
    not buy in the month (columns active_previous_month, churned, churn_rate_percent).
    """
    _require(request, VIEW_PERMISSION)
    return reports.churn_by_month(months=q.months).as_dict()


@reports_router.get("/clv-distribution", response=HistogramOut)
def clv_distribution(request, q: Query[BinsQuery]):
    """Histogram of predicted CLV (equal bins up to about the 99th percentile)."""
    _require(request, VIEW_PERMISSION)
    return reports.clv_distribution(bins=q.bins).as_dict()


@reports_router.get("/rfm-grid", response=RfmGridOut)
def rfm_grid(request):
    """Customers by RFM recency and frequency score, and by named segment."""
    _require(request, VIEW_PERMISSION)
    return reports.rfm_grid()


@reports_router.get("/stages", response=list[StageCountOut])
def stages(request):
    """Contacts per lifecycle stage."""
    _require(request, VIEW_PERMISSION)
    return reports.stage_counts()


@reports_router.get("/at-risk", response=list[AtRiskOut])
def at_risk(request, q: Query[LimitQuery]):
    """The customers most worth saving now (predicted CLV x churn risk), among the contacts
    the caller may see.
    """
    _require(request, VIEW_PERMISSION, "customers.view_contact")
    return at_risk_rows(request.user, q.limit)


@reports_router.get("/dashboard", response=DashboardOut)
def dashboard(request):
    """Headline figures of the dashboard."""
    _require(request, VIEW_PERMISSION)
    return reports.dashboard_summary()
