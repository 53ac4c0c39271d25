"""Periodic jobs of the automation app, synced by `clm run_scheduler`: (name, task, seconds)."""

SCHEDULE: list[tuple[str, str, int]] = [
    ("automation.tick", "clm.automation.tasks.automation_tick", 60),
]
