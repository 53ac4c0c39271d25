"""Entry point of this app for committed timeline events."""

from __future__ import annotations


def on_events_committed(event_ids: list[int]) -> None:
    """Handle newly committed events (filled in by the app's work)."""
