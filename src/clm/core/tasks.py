"""Periodic housekeeping of the platform."""

from __future__ import annotations

from django_tasks import task

from clm.core.idempotency import idempotency_prune


@task()
def idempotency_records_prune() -> int:
    return idempotency_prune()
