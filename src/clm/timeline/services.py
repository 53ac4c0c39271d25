"""Recording timeline events, and handing them to their consumers after commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from clm.timeline import dispatch
from clm.timeline.models import Event


def event_record(*, contact, kind: str, occurred_at: datetime | None = None,
                 source: str = "system", properties: dict[str, Any] | None = None,
                 actor=None, idempotency_key: str | None = None) -> Event:
    """Write one event for `contact`; consumers see it after the caller's transaction commits.

    Call inside the service transaction that made the change, so both land or neither does.
    """
    now = timezone.now()
    event = Event.objects.create(
        contact=contact, kind=kind, occurred_at=occurred_at or now, recorded_at=now,
        source=source, properties=properties or {},
        actor=actor if actor is not None and actor.is_authenticated else None,
        idempotency_key=idempotency_key,
    )
    dispatch.on_commit([event.pk])
    return event


def events_record_bulk(events: Sequence[Event]) -> list[Event]:
    """Insert unsaved Event objects in one statement and hand their ids on after commit.

    Returns the saved events (with primary keys on SQLite >= 3.35 and PostgreSQL).
    """
    now = timezone.now()
    for event in events:
        event.recorded_at = event.recorded_at or now
    saved = Event.objects.bulk_create(events, batch_size=1000)
    dispatch.on_commit([e.pk for e in saved if e.pk is not None])
    return saved
