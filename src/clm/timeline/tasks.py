"""Background work of the timeline (Django Tasks API). Tasks only call services."""

from __future__ import annotations

from datetime import datetime

from django_tasks import task

from clm.timeline import services


@task()
def contacts_last_activity_touch(latest: list[list]) -> int:
    """Move contacts' last_activity_at forward: `latest` is [[contact id, ISO time], …]
    (what a batch ingest hands off). Safe to run twice or late: never moves backwards."""
    services.contacts_last_activity_touch(
        {int(pk): datetime.fromisoformat(at) for pk, at in latest})
    return len(latest)
