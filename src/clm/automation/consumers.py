"""Entry point of the automation engine for committed timeline events."""

from __future__ import annotations


def on_events_committed(event_ids: list[int]) -> None:
    """Hand newly committed events to the workflow engine (filled in by the engine)."""
