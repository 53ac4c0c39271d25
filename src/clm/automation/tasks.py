"""Background work of the automation engine (Django Tasks API). Tasks only call services."""

from __future__ import annotations

from django_tasks import task

from clm.automation import services


@task()
def automation_events_process(event_ids: list[int]) -> dict[str, int]:
    """Match committed events against the active workflows; safe to run twice."""
    return services.events_process(event_ids=event_ids).as_dict()


@task()
def automation_tick() -> dict[str, int]:
    """Every minute: resume due waits, retake stalled enrollments, run date/schedule triggers."""
    return services.tick().as_dict()


@task()
def automation_enrollments_run(ids: list[int]) -> dict[str, int]:
    """Drive the given enrollments (retries); claimed ones are skipped."""
    return services.enrollments_run(ids=ids).as_dict()
