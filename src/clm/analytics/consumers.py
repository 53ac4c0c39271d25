"""Entry point of this app for committed timeline events."""

from __future__ import annotations

from clm.analytics.services import transactions_from_events


def on_events_committed(event_ids: list[int]) -> None:
    """Record the purchases of committed `order.completed` events (idempotent, in bulk)."""
    transactions_from_events(event_ids)
