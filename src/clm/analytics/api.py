"""Analytics API: the fitted CLV models, per-contact scores and the refresh.

Time unit of the BG/NBD model: weeks (stated in every response as `time_unit`).
"""

from __future__ import annotations

from datetime import date, datetime

from django.http import HttpRequest
from ninja import Router, Schema, Status

from clm.analytics import queries
from clm.analytics.api_reports import reports_router
from clm.analytics.models import ContactScore, RefreshRun
from clm.analytics.services import refresh_request
from clm.core.errors import NotFound, PermissionDenied
from clm.core.types import Id

router = Router(tags=["analytics"])

VIEW_PERMISSION = "analytics.view_contactscore"
REFRESH_PERMISSION = "analytics.add_refreshrun"


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied()


class BGNBDOut(Schema):
    time_unit: str
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float | None
    customers: int
    converged: bool


class GammaGammaOut(Schema):
    p: float
    q: float
    gamma: float
    log_likelihood: float | None
    customers: int
    converged: bool


class FrequencyDiagnosticsOut(Schema):
    frequency: list[str]
    actual: list[float]
    expected: list[float]


class ClvModelOut(Schema):
    run_id: int
    as_of: date
    fitted_at: datetime | None
    customer_count: int
    contact_count: int
    horizon_months: int
    monthly_discount: float
    expected_purchases_days: int
    bgnbd: BGNBDOut | None
    gamma_gamma: GammaGammaOut | None
    diagnostics: FrequencyDiagnosticsOut | None
    errors: list[str]


class RefreshIn(Schema):
    as_of: date | None = None


class RefreshRunOut(Schema):
    id: int
    status: str
    as_of: date
    progress: int
    step: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure: str
    customer_count: int
    contact_count: int


class ScoreOut(Schema):
    contact_id: int
    as_of: date
    time_unit: str = "weeks"
    purchases: int
    first_purchase_on: date | None
    last_purchase_on: date | None
    frequency: int | None
    recency: float | None
    T: float | None
    days_since_last_purchase: int | None
    tenure_days: int | None
    monetary: float | None
    average_spend: float | None
    rfm_r: int | None
    rfm_f: int | None
    rfm_m: int | None
    rfm_segment: str
    historical_clv: float | None
    predicted_clv: float | None
    expected_purchases: float | None
    expected_purchases_days: int | None
    p_alive: float | None
    churn_risk: float | None
    clv_decile: int | None
    health_score: float | None
    health_parts: dict


def clv_model_payload(run: RefreshRun) -> dict:
    """The API's view of a finished run (shared with the UI page)."""
    opts = run.settings or {}
    diag = (run.diagnostics or {}).get("repeat_purchases") or None
    return {
        "run_id": run.pk, "as_of": run.as_of, "fitted_at": run.finished_at,
        "customer_count": run.customer_count, "contact_count": run.contact_count,
        "horizon_months": opts.get("horizon_months", 12),
        "monthly_discount": opts.get("monthly_discount", 0.01),
        "expected_purchases_days": opts.get("window_days", 90),
        "bgnbd": run.bgnbd or None, "gamma_gamma": run.gamma_gamma or None,
        "diagnostics": diag, "errors": (run.diagnostics or {}).get("errors", []),
    }


@router.get("/clv-model", response=ClvModelOut)
def clv_model(request):
    """The models in force: the latest finished refresh (404 before the first one)."""
    _require(request, VIEW_PERMISSION)
    run = queries.current_run()
    if run is None:
        raise NotFound("No model has been fitted yet: run a refresh.", code="no_model")
    return clv_model_payload(run)


@router.post("/refresh", response={202: RefreshRunOut})
def refresh(request, payload: RefreshIn):
    """Queue a refresh as of `as_of` (default today); poll GET /refresh/{id} for progress."""
    _require(request, REFRESH_PERMISSION)
    run = refresh_request(as_of=payload.as_of, actor=request.user)
    run.refresh_from_db()
    return Status(202, run)


@router.get("/refresh/{run_id}", response=RefreshRunOut)
def refresh_status(request, run_id: Id):
    _require(request, VIEW_PERMISSION)
    run = RefreshRun.objects.filter(pk=run_id).first()
    if run is None:
        raise NotFound()
    return run


@router.get("/contacts/{contact_id}/score", response=ScoreOut)
def contact_score(request, contact_id: Id):
    """A contact's scores; 404 when the contact is not visible to the caller or unscored."""
    _require(request, VIEW_PERMISSION, "customers.view_contact")
    score: ContactScore | None = queries.scores_visible(request.user).filter(
        contact_id=contact_id).first()
    if score is None:
        raise NotFound()
    run = queries.current_run()
    score.expected_purchases_days = (run.settings or {}).get("window_days") if run else None
    return score


# Reports (cohorts, revenue, churn, CLV distribution, RFM grid, at-risk, dashboard).
router.add_router("", reports_router)

ROUTES = [("/v1/analytics", router)]
