"""Shared tables of the platform: the periodic job schedule."""

from __future__ import annotations

from django.db import models


class ScheduledJob(models.Model):
    """A periodic job: `clm run_scheduler` enqueues `task_path` every `interval_seconds`.

    Declared in code (each app's `schedule.py`) and synced at scheduler start; `next_run_at`
    is also the claim token: a scheduler enqueues only if its conditional UPDATE moved it.
    """

    name = models.CharField(max_length=100, unique=True)
    task_path = models.CharField(max_length=200)
    interval_seconds = models.PositiveIntegerField()
    next_run_at = models.DateTimeField(db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IdempotencyRecord(models.Model):
    """The first answer to an API write sent with an `Idempotency-Key` header, replayed to
    retries from the same caller. status_code 0 marks a request still being processed."""

    caller_hash = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(default=0)
    content_type = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["caller_hash", "key"],
                                               name="idempotency_record_unique_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code})"
