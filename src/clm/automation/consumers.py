"""Entry point of the automation engine for committed timeline events."""

from __future__ import annotations


def on_events_committed(event_ids: list[int]) -> None:
    """Hand newly committed events to the workflow engine, as one background task.

    Cheap when nothing listens: with no active workflow, no task is enqueued. Events the
    engine's own steps cause (source "automation", its own stage moves) never re-trigger
    the workflow that caused them.
    """
    from clm.automation.models import Workflow
    from clm.automation.tasks import automation_events_process

    if event_ids and Workflow.objects.filter(active=True).exists():
        automation_events_process.enqueue(list(event_ids))
