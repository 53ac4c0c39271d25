"""The per-contact purchase summary: kept current on every write, or grouped as of a past day.

A refresh as of today reads PurchaseSummary (one narrow row per buyer, maintained by
`summaries_update` in the transaction of every Transaction write); a refresh as of a past
day groups the transactions up to that day into a temporary table of the same shape, over
the covering index (contact, day, amount). Either way the refresh then reads one table.

Purchases on the same day are one purchase day of their summed amount (as the CLV models
count them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np
from django.db import connection

from clm.analytics import bulk
from clm.analytics.models import ActivityMonth, PurchaseMonth, PurchaseSummary, Transaction
from clm.analytics.scoring import Summary
from clm.timeline.models import Event

SUMMARY_COLUMNS = ["contact_id", "first_purchase_on", "last_purchase_on", "purchase_days",
                   "transactions", "total_amount", "first_day_amount"]
AS_OF_TABLE = "clm_tmp_summary_as_of"
# Ids per IN (...) list: well under SQLite's bound-parameter limit.
CHUNK = 500
# first_day_amount comes from MIN(day * SCALE + cents) - MIN(day) * SCALE: the smallest day
# wins and carries its amount in the low digits, in one pass over the index (portable SQL).
# Exact while a contact spends less than 10^11 (in currency units) on one day and days stay
# below 900,000 (year 4400).
SCALE = 10**13


def day_number(expr: str) -> str:
    """SQL for the days from 1970-01-01 to the date `expr` (an integer)."""
    if connection.vendor == "postgresql":
        return f"({expr} - DATE '1970-01-01')"
    return f"CAST(julianday({expr}) - 2440587.5 AS INTEGER)"


def _select_sql(where: str) -> str:
    """SELECT of SUMMARY_COLUMNS from the transactions matching `where` (on the table `t`)."""
    table = Transaction._meta.db_table
    day = day_number("d.day")
    cents = "CAST(ROUND(d.amount * 100) AS BIGINT)"
    return f"""
        SELECT d.contact_id, MIN(d.day), MAX(d.day), COUNT(*), SUM(d.n), ROUND(SUM(d.amount), 2),
               (MIN({day} * {SCALE} + {cents}) - MIN({day}) * {SCALE}) / 100.0
        FROM (SELECT t.contact_id, t.occurred_on AS day, COUNT(*) AS n, SUM(t.amount) AS amount
              FROM {table} t WHERE {where}
              GROUP BY t.contact_id, t.occurred_on) d
        GROUP BY d.contact_id
    """  # noqa: S608 - table names from the models, values bound


def _insert_sql(target: str, where: str) -> str:
    cols = ", ".join(SUMMARY_COLUMNS)
    return f"INSERT INTO {target} ({cols}) {_select_sql(where)}"


def month_index(expr: str) -> str:
    """SQL for year * 12 + month - 1 of the date or timestamp `expr` (UTC for timestamps)."""
    if connection.vendor == "postgresql":
        # DATE_PART (a float) rather than EXTRACT (a numeric: several times slower).
        return (f"(CAST(DATE_PART('year', {expr}) AS INTEGER) * 12 "
                f"+ CAST(DATE_PART('month', {expr}) AS INTEGER) - 1)")
    # Django stores dates and UTC timestamps as 'YYYY-MM-DD…' text on SQLite.
    return (f"(CAST(substr({expr}, 1, 4) AS INTEGER) * 12 "
            f"+ CAST(substr({expr}, 6, 2) AS INTEGER) - 1)")


def _months_insert_sql(where: str) -> str:
    month = month_index("t.occurred_on")
    return f"""
        INSERT INTO {PurchaseMonth._meta.db_table} (contact_id, month, revenue, purchase_days)
        SELECT t.contact_id, {month}, SUM(t.amount), COUNT(DISTINCT t.occurred_on)
        FROM {Transaction._meta.db_table} t WHERE {where}
        GROUP BY t.contact_id, {month}
    """  # noqa: S608 - table names from the models, values bound


def _activity_insert_sql(where: str, *, skip_existing: bool) -> str:
    month = month_index("e.occurred_at")
    conflict = " ON CONFLICT (contact_id, month) DO NOTHING" if skip_existing else ""
    return f"""
        INSERT INTO {ActivityMonth._meta.db_table} (contact_id, month)
        SELECT DISTINCT e.contact_id, {month} FROM {Event._meta.db_table} e WHERE {where}
        {conflict}
    """  # noqa: S608 - table names from the models, values bound


def summaries_update(contact_ids: Iterable[int]) -> None:
    """Recompute the PurchaseSummary rows of `contact_ids` from their transactions.

    Call it in the transaction that wrote their transactions (any insert, update, move or
    delete). Set-based: two statements per CHUNK contacts. Contacts left without purchases
    lose their row.
    """
    ids = sorted({int(i) for i in contact_ids})
    table, months = PurchaseSummary._meta.db_table, PurchaseMonth._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {table} WHERE contact_id IN ({marks})", chunk)  # noqa: S608
            cursor.execute(_insert_sql(table, f"t.contact_id IN ({marks})"), chunk)
            cursor.execute(f"DELETE FROM {months} WHERE contact_id IN ({marks})", chunk)  # noqa: S608
            cursor.execute(_months_insert_sql(f"t.contact_id IN ({marks})"), chunk)


def summaries_rebuild() -> int:
    """Recompute every PurchaseSummary and PurchaseMonth row from all transactions; returns
    the number of summaries. For repairs and after loading transactions by other means.
    """
    table = PurchaseSummary._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PurchaseMonth._meta.db_table}")  # noqa: S608
        cursor.execute(_months_insert_sql("1 = 1"))
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608
        cursor.execute(_insert_sql(table, "1 = 1"))
        return cursor.rowcount


def activity_months_add(event_ids: Iterable[int]) -> None:
    """Record the (contact, month) of each of `event_ids` as active (idempotent)."""
    ids = sorted({int(i) for i in event_ids})
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(_activity_insert_sql(f"e.id IN ({marks})", skip_existing=True), chunk)


def activity_months_update(contact_ids: Iterable[int]) -> None:
    """Recompute the active months of `contact_ids` from their events (after a merge)."""
    ids = sorted({int(i) for i in contact_ids})
    table = ActivityMonth._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {table} WHERE contact_id IN ({marks})", chunk)  # noqa: S608
            cursor.execute(_activity_insert_sql(f"e.contact_id IN ({marks})",
                                                skip_existing=False), chunk)


def activity_months_rebuild() -> int:
    """Recompute every ActivityMonth row from all events; returns the row count."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ActivityMonth._meta.db_table}")  # noqa: S608
        cursor.execute(_activity_insert_sql("1 = 1", skip_existing=False))
        return cursor.rowcount


def source_for(as_of: date) -> str:
    """The table holding the summary as of `as_of`: PurchaseSummary when no purchase is
    later than `as_of` (the usual refresh as of today), else a temporary table grouped now.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(occurred_on) FROM {Transaction._meta.db_table}")  # noqa: S608
        latest = cursor.fetchone()[0]
        if isinstance(latest, str):
            latest = date.fromisoformat(latest)
        if latest is None or latest <= as_of:
            return PurchaseSummary._meta.db_table
        drop_as_of_table()
        cursor.execute(f"""CREATE TEMPORARY TABLE {AS_OF_TABLE} (
            contact_id BIGINT PRIMARY KEY, first_purchase_on DATE NOT NULL,
            last_purchase_on DATE NOT NULL, purchase_days INTEGER NOT NULL,
            transactions INTEGER NOT NULL, total_amount DECIMAL(16, 2) NOT NULL,
            first_day_amount DECIMAL(16, 2) NOT NULL)""")
        cursor.execute(_insert_sql(AS_OF_TABLE, "t.occurred_on <= %s"),
                       [connection.ops.adapt_datefield_value(as_of)])
    return AS_OF_TABLE


def drop_as_of_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {AS_OF_TABLE}")


def read(source: str) -> Summary:
    """The summary rows of `source` as NumPy arrays, sorted by contact id."""
    real = "DOUBLE PRECISION" if connection.vendor == "postgresql" else "REAL"
    sql = (f"SELECT contact_id, {day_number('first_purchase_on')}, "  # noqa: S608
           f"{day_number('last_purchase_on')}, purchase_days, "
           f"CAST(total_amount AS {real}), CAST(first_day_amount AS {real}) FROM {source}")
    ids, first, last, days, total, first_total = bulk.read_columns(
        sql, [], ["i8", "i4", "i4", "i4", "f8", "f8"])
    order = np.argsort(ids, kind="stable")
    if ids.size and not np.all(order == np.arange(ids.size)):
        ids, first, last, days, total, first_total = (
            a[order] for a in (ids, first, last, days, total, first_total))
    return Summary(ids.astype(np.int64), days.astype(np.int64), first.astype(np.int64),
                   last.astype(np.int64), total.astype(np.float64), first_total.astype(np.float64))
