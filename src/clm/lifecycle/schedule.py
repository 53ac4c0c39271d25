"""Periodic jobs of the lifecycle app, synced by `clm run_scheduler`: (name, task, seconds)."""

SCHEDULE: list[tuple[str, str, int]] = [
    ("lifecycle.churn_inactive", "clm.lifecycle.tasks.lifecycle_churn_inactive", 24 * 3600),
    # The by-source funnel reads this rollup and says how old it is.
    ("lifecycle.funnel_rollup", "clm.lifecycle.tasks.lifecycle_funnel_rollup", 15 * 60),
]
