"""Background work of the lifecycle engine (Django Tasks API). Tasks only call services."""

from __future__ import annotations

from django_tasks import task

from clm.lifecycle import services


@task()
def lifecycle_events_process(event_ids: list[int]) -> int:
    """Run committed events through the rules; safe to run twice. Returns moves written."""
    return services.events_process(event_ids=event_ids).moves


@task()
def lifecycle_churn_inactive() -> int:
    """Scheduled daily: churn customers without a purchase for CLM_CHURN_AFTER_DAYS."""
    return services.inactivity_churn_apply()


@task()
def lifecycle_funnel_marks_recompute() -> int:
    """After a stage edit: recompute the funnel's advance_s if the stage order changed."""
    return services.funnel_marks_recompute()


@task()
def lifecycle_funnel_rollup() -> int:
    """Scheduled: rebuild the by-source funnel rollup. Returns its rows."""
    return services.funnel_rollup_refresh()
