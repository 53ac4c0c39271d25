"""Entry point of the lifecycle engine for committed timeline events."""

from __future__ import annotations


def on_events_committed(event_ids: list[int]) -> None:
    """Hand newly committed events to the lifecycle engine, as one background task.

    The task ignores the engine's own kinds (stage.changed), so its events never loop back.
    """
    from clm.lifecycle.tasks import lifecycle_events_process

    if event_ids:
        lifecycle_events_process.enqueue(list(event_ids))
