"""Fast bulk write of the per-contact score table (a million rows in seconds).

Django's bulk_create builds a model instance per row, too slow at this size; this writes
plain tuples: executemany on SQLite, COPY on PostgreSQL. The caller holds the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from django.db import connection

from clm.analytics.models import ContactScore

SCORE_COLUMNS = [
    "contact_id", "as_of", "purchases", "first_purchase_on", "last_purchase_on", "frequency",
    "recency", "T", "days_since_last_purchase", "tenure_days", "monetary", "average_spend",
    "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "historical_clv", "predicted_clv",
    "expected_purchases", "p_alive", "churn_risk", "clv_decile", "health_score",
    "health_parts",
]


def column_values(values: np.ndarray | Sequence, *, digits: int | None = None) -> list:
    """A NumPy column as Python values, NaN (and NaT) as None, floats rounded to `digits`."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if digits is not None:
            arr = np.round(arr, digits)
        out = arr.astype(object)
        out[np.isnan(arr)] = None
        return out.tolist()
    if arr.dtype.kind == "M":
        out = np.datetime_as_string(arr, unit="D").astype(object)
        out[np.isnat(arr)] = None
        return out.tolist()
    return arr.tolist()


def scores_replace(n: int, rows_for: Callable[[int, int], Iterable[tuple]],
                   chunk: int = 50_000) -> int:
    """Replace every ContactScore row by the `n` rows that `rows_for(start, stop)` yields.

    Rows are built a chunk at a time (bounded memory) in SCORE_COLUMNS order. Runs inside
    the caller's transaction: readers see the old scores until it commits.
    """
    table = ContactScore._meta.db_table
    quoted = ", ".join(connection.ops.quote_name(c) for c in SCORE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - model table name
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for start in range(0, n, chunk):
                    for row in rows_for(start, min(n, start + chunk)):
                        copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(SCORE_COLUMNS))
            sql = f"INSERT INTO {table} ({quoted}) VALUES ({placeholders})"  # noqa: S608
            for start in range(0, n, chunk):
                cursor.executemany(sql, rows_for(start, min(n, start + chunk)))
    return n
