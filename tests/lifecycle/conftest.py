"""Helpers for lifecycle tests: record events as the app does and run the engine after commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clm.lifecycle.models import StageChange
from clm.timeline.services import event_record
from tests.factories import ContactFactory

# Recent enough that the default 365-day inactivity churn is not due yet.
T0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=60)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def emit(db, django_capture_on_commit_callbacks):
    """emit(contact, kind, at_day, **properties): record an event and let the engine run."""

    def _emit(contact, kind: str, at: float | datetime = 0, **properties):
        when = at if isinstance(at, datetime) else day(at)
        with django_capture_on_commit_callbacks(execute=True):
            event = event_record(contact=contact, kind=kind, occurred_at=when, source="test",
                                 properties=properties)
        contact.refresh_from_db()
        return event

    return _emit


@pytest.fixture
def contact(db):
    return ContactFactory()


def journey(contact) -> list[tuple[str, str, int]]:
    """The contact's history as (from, to, life)."""
    return list(StageChange.objects.filter(contact=contact).order_by("seq")
                .values_list("from_stage", "to_stage", "life"))
