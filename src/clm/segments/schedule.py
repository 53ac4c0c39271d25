"""Periodic jobs of the segments app, synced by `clm run_scheduler`: (name, task, seconds)."""

SCHEDULE: list[tuple[str, str, int]] = [
    ("segments.evaluate", "clm.segments.tasks.segments_evaluate", 15 * 60),
]
