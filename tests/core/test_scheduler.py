"""The periodic scheduler: declared jobs sync, each due job is enqueued exactly once even
with two schedulers, and the real database worker runs what was enqueued."""

from __future__ import annotations

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from clm.core import scheduler
from clm.core.models import ScheduledJob

DB_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}


class CountingTask:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def enqueue(self):
        with self.lock:
            self.calls += 1
        return mock.Mock(id="fake")


@pytest.mark.django_db
def test_sync_creates_declared_jobs_including_lifecycle_churn():
    scheduler.jobs_sync()
    job = ScheduledJob.objects.get(name="lifecycle.churn_inactive")
    assert job.task_path == "clm.lifecycle.tasks.lifecycle_churn_inactive"
    assert job.interval_seconds == 86400
    assert job.next_run_at > timezone.now()


@pytest.mark.django_db
def test_sync_updates_and_disables():
    now = timezone.now()
    scheduler.jobs_sync([("a", "x.y", 60), ("b", "x.z", 60)], now=now)
    scheduler.jobs_sync([("a", "x.y2", 120)], now=now)
    a, b = ScheduledJob.objects.order_by("name")
    assert (a.task_path, a.interval_seconds, a.enabled) == ("x.y2", 120, True)
    assert b.enabled is False


@pytest.mark.django_db
def test_stale_claim_loses():
    """Two schedulers read the same due row; only the first conditional UPDATE wins."""
    now = timezone.now()
    scheduler.jobs_sync([("j", "t.t", 60)], now=now - timedelta(seconds=120))
    seen_by_a = ScheduledJob.objects.get(name="j")
    seen_by_b = ScheduledJob.objects.get(name="j")
    assert scheduler.job_claim(seen_by_a, now) is True
    assert scheduler.job_claim(seen_by_b, now) is False
    job = ScheduledJob.objects.get(name="j")
    assert job.next_run_at > now and job.last_run_at == now


@pytest.mark.django_db
def test_run_once_enqueues_due_jobs_and_skips_the_rest():
    declared = [("due", "t.due", 60), ("later", "t.later", 3600)]
    scheduler.jobs_sync(declared, now=timezone.now() - timedelta(seconds=61))
    task = CountingTask()
    with mock.patch.object(scheduler, "import_string", return_value=task), \
            mock.patch.object(scheduler, "declared_jobs", return_value=declared):
        call_command("run_scheduler", "--once")
        call_command("run_scheduler", "--once")
    assert task.calls == 1
    assert ScheduledJob.objects.get(name="due").last_status == "enqueued fake"
    assert ScheduledJob.objects.get(name="later").last_run_at is None


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_in_threads_enqueue_each_due_job_once():
    now = timezone.now()
    scheduler.jobs_sync([(f"job{i}", "t.t", 3600) for i in range(5)],
                        now=now - timedelta(seconds=3601))
    task = CountingTask()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_scheduler():
        try:
            due = list(ScheduledJob.objects.filter(next_run_at__lte=now))  # both read first
            barrier.wait(timeout=10)
            for job in due:
                if scheduler.job_claim(job, now):
                    task.enqueue()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert task.calls == 5


@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_the_enqueued_job():
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    with override_settings(TASKS=DB_TASKS):
        scheduler.jobs_sync(now=now - timedelta(days=2))
        assert "lifecycle.churn_inactive" in scheduler.run_due(now)
        assert scheduler.run_due(now) == []  # not due again until tomorrow
        churn_path = "clm.lifecycle.tasks.lifecycle_churn_inactive"
        pending = DBTaskResult.objects.get(task_path=churn_path)
        assert pending.status == "READY"
        call_command("db_worker", batch=True, startup_delay=False, reload=False, verbosity=0)
        done = DBTaskResult.objects.get(task_path=churn_path)
        assert done.status == "SUCCESSFUL"
