"""Periodic jobs of the core app, synced by `clm run_scheduler`: (name, task, seconds)."""

SCHEDULE: list[tuple[str, str, int]] = [
    ("core.idempotency_prune", "clm.core.tasks.idempotency_records_prune", 6 * 3600),
]
