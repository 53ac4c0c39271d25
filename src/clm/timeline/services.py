"""Recording timeline events, and handing them to their consumers after commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from clm.timeline import dispatch
from clm.timeline.models import Event


def event_record(*, contact, kind: str, occurred_at: datetime | None = None,
                 source: str = "system", properties: dict[str, Any] | None = None,
                 actor=None, idempotency_key: str | None = None) -> Event:
    """Write one event for `contact`; consumers see it after the caller's transaction commits.

    Call inside the service transaction that made the change, so both land or neither does.
    """
    now = timezone.now()
    event = Event.objects.create(
        contact=contact, kind=kind, occurred_at=occurred_at or now, recorded_at=now,
        source=source, properties=properties or {},
        actor=actor if actor is not None and actor.is_authenticated else None,
        idempotency_key=idempotency_key,
    )
    dispatch.on_commit([event.pk])
    return event


def events_record_bulk(events: Sequence[Event]) -> list[Event]:
    """Insert unsaved Event objects in one statement and hand their ids on after commit.

    Returns the saved events (with primary keys on SQLite >= 3.35 and PostgreSQL).
    """
    now = timezone.now()
    for event in events:
        event.recorded_at = event.recorded_at or now
    saved = Event.objects.bulk_create(events, batch_size=1000)
    dispatch.on_commit([e.pk for e in saved if e.pk is not None])
    return saved


def _max_query_params() -> int:
    """Bind parameters one statement may carry on this connection."""
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        # The real limit (32,766 since SQLite 3.32), not Django's conservative 999.
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 65535


EVENT_ROW_COLUMNS = ("contact_id", "kind", "occurred_at", "source", "properties",
                     "idempotency_key", "actor_id")


def events_insert_rows(rows: Sequence[tuple]) -> list[int]:
    """Insert events given as tuples in EVENT_ROW_COLUMNS order, `properties` already JSON
    text; return their ids in order and hand them to the consumers after commit.

    The ingest hot path: one multi-row INSERT per few thousand rows, built directly instead
    of through bulk_create, whose per-field compiling costs more than the database's own
    insert. Raises IntegrityError as bulk_create would (e.g. on a known idempotency key).
    """
    from django.db import connection

    if not rows:
        return []
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    columns = [*EVENT_ROW_COLUMNS, "recorded_at"]
    jsonb = "::jsonb" if connection.vendor == "postgresql" else ""
    row_sql = f"(%s, %s, %s, %s, %s{jsonb}, %s, %s, %s)"
    table = ops.quote_name(Event._meta.db_table)
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - fixed names
    per_statement = max(1, min(4000, _max_query_params() // len(columns)))
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            params: list[Any] = []
            for contact_id, kind, occurred_at, source, properties, key, actor_id in chunk:
                params += [contact_id, kind, ops.adapt_datetimefield_value(occurred_at), source,
                           properties, key, actor_id, now]
            cursor.execute(f"{head}{', '.join([row_sql] * len(chunk))} RETURNING id", params)
            # Rows come back in insertion order, as bulk_create also relies on.
            ids += [pk for (pk,) in cursor.fetchall()]
    dispatch.on_commit(ids)
    return ids


def contacts_last_activity_touch(latest: dict[int, datetime]) -> None:
    """Move each contact's last_activity_at forward to the given time, never backwards (one
    statement; the caller holds the transaction, if any).

    Raw SQL because an ORM Case/When over 1,000 contacts costs more to compile than the
    whole insert; UPDATE … FROM works on PostgreSQL and SQLite >= 3.33.
    """
    if not latest:
        return
    from django.db import connection

    from clm.customers.models import Contact

    ops = connection.ops
    table = ops.quote_name(Contact._meta.db_table)
    row = "(%s::bigint, %s::timestamptz)" if connection.vendor == "postgresql" else "(%s, %s)"
    params: list[Any] = []
    for pk, at in latest.items():
        params += [pk, ops.adapt_datetimefield_value(at)]
    sql = (
        f"WITH v(id, at) AS (VALUES {', '.join([row] * len(latest))}) "  # noqa: S608 - no user text
        f"UPDATE {table} SET last_activity_at = v.at FROM v "
        f"WHERE {table}.id = v.id AND ({table}.last_activity_at IS NULL "
        f"OR {table}.last_activity_at < v.at)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
