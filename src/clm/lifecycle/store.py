"""The engine's raw database access: reading inputs and writing results without model instances.

The engine moves millions of rows in a rebuild; Django's per-row machinery (model instances,
field converters, bulk_create's per-field compiling) costs more than the database's own
work there. Everything here is plain SQL over the connection, with values the engine made
itself (never user text spliced into SQL: every value is a bound parameter).

Times: on SQLite Django stores naive UTC text ('YYYY-MM-DD HH:MM:SS[.ffffff]'); `db_time`
writes that format and `aware`/`naive` read it back. On PostgreSQL psycopg passes aware
datetimes both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from clm.lifecycle.fold import Move

FETCH = 10000


def is_sqlite() -> bool:
    return connection.vendor == "sqlite"


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _parse(value: Any) -> datetime:
    if value.__class__ is datetime:
        return value
    return datetime.fromisoformat(value)


def aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime."""
    if value is None:
        return None
    value = _parse(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive(value: Any) -> datetime | None:
    """A stored time as a naive UTC datetime (the SQLite rebuild's cheaper representation)."""
    if value is None:
        return None
    value = _parse(value)
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


_ZERO = timedelta(0)


def db_time(value: datetime | None) -> Any:
    """A datetime as the database stores it (naive datetimes are taken as UTC)."""
    if value is None or not is_sqlite():
        return value
    if value.tzinfo is None:
        return str(value)
    if value.utcoffset() == _ZERO:
        return str(value.replace(tzinfo=None))
    return str(value.astimezone(UTC).replace(tzinfo=None))


def time_writer():
    """`db_time` for this connection, bound once (the rebuild calls it millions of times)."""
    if not is_sqlite():
        return lambda value: value
    zero = _ZERO

    def write(value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return str(value)
        if value.utcoffset() == zero:
            return str(value.replace(tzinfo=None))
        return str(value.astimezone(UTC).replace(tzinfo=None))
    return write


def column(name: str, *, time: bool = False) -> str:
    """A column for a raw SELECT. Times on SQLite are read as text: an expression has no
    declared type, so Django's per-value converter does not run (we parse, or compare text)."""
    if time and is_sqlite():
        return f"({qn(name)} || '')"
    return qn(name)


def index_hint(model, fields: list[str]) -> str:
    """` INDEXED BY <the model's index on fields>` on SQLite, if that index exists, else "".

    SQLite's planner, given `contact_id BETWEEN … AND kind IN (…)` on the events table,
    prefers the index on kind and then reads every event of those kinds (a minute per range
    at 10M events, instead of a second): the rebuild names the (contact, kind, time) index.
    """
    if not is_sqlite():
        return ""
    names = [index.name for index in model._meta.indexes if list(index.fields) == fields]
    if not names:
        return ""
    found = list(fetch("SELECT name FROM sqlite_master WHERE type = 'index' AND name = %s",
                       [names[0]]))
    return f" INDEXED BY {qn(names[0])}" if found else ""


def _sql(sql: str) -> str:
    """Our SQL uses %s placeholders; the raw sqlite3 driver wants ?."""
    return sql.replace("%s", "?") if is_sqlite() else sql


def fetch(sql: str, params: Sequence[Any] = (), size: int = FETCH) -> Iterator[tuple]:
    """Rows of a query straight from the driver (no Django converters), in chunks."""
    if is_sqlite():
        connection.ensure_connection()
        cursor = connection.connection.execute(_sql(sql), params)
        try:
            while rows := cursor.fetchmany(size):
                yield from rows
        finally:
            cursor.close()
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(size):
            yield from rows


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def execute_many(sql: str, rows: Iterable[Sequence[Any]]) -> None:
    """One statement for many parameter rows (caller is inside a transaction)."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return
    if is_sqlite():
        connection.ensure_connection()
        connection.connection.executemany(_sql(sql), rows)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def insert(table: str, columns: Sequence[str], rows: list[Sequence[Any]]) -> None:
    """Insert already-adapted rows: executemany on SQLite, COPY on PostgreSQL."""
    if not rows:
        return
    cols = ", ".join(qn(c) for c in columns)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor, \
                cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(columns))
    execute_many(f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})", rows)  # noqa: S608


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------
# stage.changed event properties, as JSON text
# ---------------------------------------------------------------------------------------

def event_properties(move: Move) -> dict:
    return {"from": move.from_stage, "to": move.to_stage, "life": move.life,
            "actor_type": move.actor_type, "reason": move.reason, "rule_id": move.rule_id,
            "cause_event_id": move.cause_event_id, "manual_move_id": move.manual_move_id}


class PropertiesJSON:
    """`json.dumps(event_properties(move))`, byte for byte, at a fraction of the cost.

    Everything before the ids repeats across moves (stages, life, actor type, rule name), so
    that prefix is encoded once per distinct combination.
    """

    def __init__(self) -> None:
        self._prefixes: dict[tuple, str] = {}

    def __call__(self, m: Move) -> str:
        head = (m.from_stage, m.to_stage, m.life, m.actor_type, m.reason, m.rule_id)
        prefix = self._prefixes.get(head)
        if prefix is None:
            d = json.dumps
            prefix = self._prefixes[head] = (
                f'{{"from": {d(m.from_stage)}, "to": {d(m.to_stage)}, "life": {d(m.life)}, '
                f'"actor_type": {d(m.actor_type)}, "reason": {d(m.reason)}, '
                f'"rule_id": {d(m.rule_id)}, "cause_event_id": ')
            if len(self._prefixes) > 100_000:  # reasons of manual moves are free text
                self._prefixes.clear()
        cause, manual = m.cause_event_id, m.manual_move_id
        return (f'{prefix}{"null" if cause is None else int(cause)}, '
                f'"manual_move_id": {"null" if manual is None else int(manual)}}}')


def same_json(stored: Any, text: str) -> bool:
    """Whether stored JSON (text, or already decoded) holds the same value as `text`."""
    if stored == text:
        return True
    if isinstance(stored, str | bytes):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    return stored == json.loads(text)
