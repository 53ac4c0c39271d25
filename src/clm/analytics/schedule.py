"""Periodic jobs of the analytics app, synced by `clm run_scheduler`: (name, task, seconds)."""

from django.conf import settings

SCHEDULE: list[tuple[str, str, int]] = [
    ("analytics.refresh", "clm.analytics.tasks.analytics_refresh_periodic",
     max(3600, int(settings.CLM_ANALYTICS_REFRESH_HOURS * 3600))),
]
