"""Periodic jobs of the engagement app, synced by `clm run_scheduler`: (name, task, seconds).

The outbox is also kicked right after a broadcast starts; this job sends what became due
since (held messages after caps or quiet hours, retries after backoff, workflow emails).
"""

SCHEDULE: list[tuple[str, str, int]] = [
    ("engagement.outbox_send_due", "clm.engagement.tasks.outbox_send_due", 60),
    ("engagement.broadcasts_start_due", "clm.engagement.tasks.broadcasts_start_due", 60),
]
