"""Background work of the analytics app (Django Tasks API): no logic, just service calls."""

from __future__ import annotations

from django_tasks import task

from clm.analytics.models import RefreshRun
from clm.analytics.services import events_committed_process, refresh_execute, refresh_scheduled


@task()
def analytics_events_process(event_ids: list[int]) -> int:
    """Committed events: purchases, active months, merged contacts' summaries (idempotent).
    Returns the purchases added."""
    return events_committed_process(event_ids)


@task()
def analytics_refresh_task(run_id: int) -> None:
    """Execute a queued refresh; a finished or missing run is left alone (idempotent)."""
    run = RefreshRun.objects.filter(pk=run_id).first()
    if run is not None:
        refresh_execute(run=run)


@task()
def analytics_refresh_periodic() -> None:
    """The scheduler's refresh as of today (see services.refresh_scheduled)."""
    refresh_scheduled()
