"""The periodic scheduler: enqueue each due job exactly once, however many schedulers run.

Apps declare jobs in `clm/<app>/schedule.py` as SCHEDULE = [(name, task dotted path,
interval seconds)]. `jobs_sync()` writes them to ScheduledJob; `run_due()` claims each due
job with a conditional UPDATE (… WHERE name = ? AND next_run_at = <value read>) — only one
scheduler's UPDATE matches — and the winner enqueues the task through the Tasks API.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from importlib import import_module

from django.apps import apps
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from clm.core.models import ScheduledJob

logger = logging.getLogger(__name__)


def declared_jobs() -> list[tuple[str, str, int]]:
    """(name, task path, interval) from every installed clm app's schedule.py."""
    jobs: list[tuple[str, str, int]] = []
    for config in apps.get_app_configs():
        if not config.name.startswith("clm."):
            continue
        try:
            module = import_module(f"{config.name}.schedule")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.schedule":
                raise
            continue
        jobs.extend((str(n), str(p), int(i)) for n, p, i in getattr(module, "SCHEDULE", []))
    return jobs


@transaction.atomic
def jobs_sync(jobs: list[tuple[str, str, int]] | None = None,
              now: datetime | None = None) -> list[ScheduledJob]:
    """Create missing jobs (first run one interval from now) and update paths/intervals.

    Jobs no longer declared are disabled, not deleted (their last status stays readable).
    """
    now = now or timezone.now()
    jobs = declared_jobs() if jobs is None else jobs
    names = set()
    for name, task_path, interval in jobs:
        names.add(name)
        job, created = ScheduledJob.objects.get_or_create(
            name=name, defaults={"task_path": task_path, "interval_seconds": interval,
                                 "next_run_at": now + timedelta(seconds=interval)})
        if not created and (job.task_path, job.interval_seconds, job.enabled) != \
                (task_path, interval, True):
            ScheduledJob.objects.filter(pk=job.pk).update(
                task_path=task_path, interval_seconds=interval, enabled=True)
    ScheduledJob.objects.exclude(name__in=names).update(enabled=False)
    return list(ScheduledJob.objects.filter(name__in=names))


def job_claim(job: ScheduledJob, now: datetime) -> bool:
    """Move the job's next run forward iff nobody else did since we read it."""
    next_run = job.next_run_at + timedelta(seconds=job.interval_seconds)
    # Skip missed runs instead of firing a burst after downtime.
    while next_run <= now:
        next_run += timedelta(seconds=job.interval_seconds)
    claimed = ScheduledJob.objects.filter(
        pk=job.pk, next_run_at=job.next_run_at, enabled=True,
    ).update(next_run_at=next_run, last_run_at=now)
    return claimed == 1


def run_due(now: datetime | None = None) -> list[str]:
    """Enqueue every due job this scheduler wins; returns the names enqueued."""
    now = now or timezone.now()
    enqueued: list[str] = []
    for job in ScheduledJob.objects.filter(enabled=True, next_run_at__lte=now):
        if not job_claim(job, now):
            continue
        try:
            result = import_string(job.task_path).enqueue()
            status = f"enqueued {result.id}"
            enqueued.append(job.name)
        except Exception as exc:  # a broken job must not stop the others
            logger.exception("Scheduled job %s failed to enqueue", job.name)
            status = f"error: {type(exc).__name__}: {exc}"[:200]
        ScheduledJob.objects.filter(pk=job.pk).update(last_status=status)
    return enqueued


def seconds_until_next(now: datetime | None = None, cap: float = 30.0) -> float:
    now = now or timezone.now()
    nxt = ScheduledJob.objects.filter(enabled=True).order_by("next_run_at") \
        .values_list("next_run_at", flat=True).first()
    if nxt is None:
        return cap
    return max(0.5, min(cap, (nxt - now).total_seconds()))
