"""Staff UI of the analytics app: the dashboard, the fitted CLV models and a refresh."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from clm.analytics import queries, reports
from clm.analytics.api import REFRESH_PERMISSION, VIEW_PERMISSION, clv_model_payload
from clm.analytics.api_reports import at_risk_rows
from clm.analytics.exports import CHARTS
from clm.analytics.rfm import SEGMENT_RULES
from clm.core.csvsafe import csv_response
from clm.core.errors import DomainError


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def clv_model(request):
    run = queries.current_run()
    latest = queries.latest_run()
    context = {
        "model": clv_model_payload(run) if run else None,
        "latest": latest,
        "can_refresh": request.user.has_perm(REFRESH_PERMISSION),
        "segment_rules": SEGMENT_RULES,
    }
    return render(request, "analytics/clv_model.html", context)


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def refresh_status(request):
    """The refresh progress fragment (htmx polls it while a refresh runs)."""
    return render(request, "analytics/_refresh_status.html",
                  {"latest": queries.latest_run(),
                   "can_refresh": request.user.has_perm(REFRESH_PERMISSION)})


@login_required
@permission_required(REFRESH_PERMISSION, raise_exception=True)
@require_POST
def refresh(request):
    from clm.analytics.services import refresh_request

    try:
        refresh_request(actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Refresh queued: the scores update in the background.")
    return redirect("analytics:clv_model")


CONTACT_PERMISSION = "customers.view_contact"


def _heatmap(table: reports.CohortTable) -> list[dict]:
    """Rows of (value, percent, background opacity) cells for the cohort heatmap table."""
    rows = []
    for cohort, size, values, percent in zip(table.cohorts, table.sizes, table.values,
                                             table.percent, strict=True):
        cells = [{"value": v, "percent": p,
                  "alpha": None if p is None else f"{min(max(p, 0.0), 100.0) / 100:.2f}"}
                 for v, p in zip(values, percent, strict=True)]
        rows.append({"cohort": cohort, "size": size, "cells": cells})
    return rows


def _rfm_rows(grid: dict) -> dict:
    top = max((n for row in grid["counts"] for n in row), default=0) or 1
    return {"f": grid["f"], "rows": [
        {"r": r, "cells": [{"count": n, "alpha": f"{n / top:.2f}"} for n in row]}
        for r, row in zip(grid["r"], grid["counts"], strict=True)]}


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def dashboard(request):
    """Customers by stage, revenue, CLV distribution, RFM grid, who to save, cohorts."""
    cohorts = {kind: reports.COHORT_REPORTS[kind](months=12) for kind in
               ("purchase", "activity", "revenue")}
    may_see_contacts = request.user.has_perm(CONTACT_PERMISSION)
    context = {
        "summary": reports.dashboard_summary(),
        "charts": {
            "stages": reports.stage_counts(),
            "revenue": reports.revenue_by_month(months=24).as_dict(),
            "churn": reports.churn_by_month(months=12).as_dict(),
            "clv": reports.clv_distribution().as_dict(),
        },
        "rfm": _rfm_rows(reports.rfm_grid()),
        "at_risk": at_risk_rows(request.user, 20) if may_see_contacts else None,
        "heatmaps": [(kind, cohorts[kind].offsets, _heatmap(cohorts[kind]))
                     for kind in ("purchase", "revenue", "activity")],
    }
    return render(request, "analytics/dashboard.html", context)


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def dashboard_csv(request, chart: str):
    """One dashboard chart's data as CSV (the at-risk list only with contacts the user sees)."""
    table = CHARTS.get(chart)
    if table is None:
        raise Http404()
    if chart == "at-risk" and not request.user.has_perm(CONTACT_PERMISSION):
        raise Http404()
    filename, header, rows = table(request.user)
    return csv_response(filename, header, rows)
