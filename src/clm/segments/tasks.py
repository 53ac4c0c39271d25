"""Background work of the segments app (Django Tasks API). Tasks only call services."""

from __future__ import annotations

from django_tasks import task

from clm.segments import services


@task()
def segments_evaluate() -> int:
    """Scheduled: refresh behaviour counters, evaluate every active dynamic segment and
    record segment.entered / segment.left events. Safe to run twice. Returns events written."""
    return services.segments_evaluate().events
