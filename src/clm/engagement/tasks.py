"""Background work of the engagement app (Django Tasks API); tasks only call services."""

from __future__ import annotations

from django_tasks import task

from clm.engagement import outbox, services


@task()
def outbox_send_due(batch_size: int = 100) -> dict[str, int]:
    """Send every due outbox message (idempotent: claimed rows are sent at most once)."""
    return outbox.outbox_send_due(batch_size=batch_size).as_dict()


@task()
def broadcasts_start_due() -> list[int]:
    """Start scheduled broadcasts whose time has come, then send (idempotent)."""
    started = services.broadcasts_start_due()
    outbox.outbox_send_due()
    return started
