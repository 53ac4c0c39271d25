"""Staff UI of the analytics app: the fitted CLV models, their diagnostics and a refresh."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from clm.analytics import queries
from clm.analytics.api import REFRESH_PERMISSION, VIEW_PERMISSION, clv_model_payload
from clm.analytics.rfm import SEGMENT_RULES
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
