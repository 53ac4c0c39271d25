"""SQLite upkeep: statistics for indexes that a migration added to an analysed table."""

from __future__ import annotations

from django.db import connections


def analyze_new_indexes(using: str = "default") -> list[str]:
    """ANALYZE each index that has no statistics while its table has some; return their names.

    Without this, the planner sees a new index with no statistics beside old ones that report
    real row counts, takes the new one for the most selective, and may sort a large share of a
    table instead of reading an index that is already in order (seen: 0.6 s list pages).
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return []
        cursor.execute("SELECT DISTINCT tbl, idx FROM sqlite_stat1 WHERE idx IS NOT NULL")
        analysed = cursor.fetchall()
        tables = {tbl for tbl, _ in analysed}
        known = {idx for _, idx in analysed}
        cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
        missing = [name for name, tbl in cursor.fetchall() if tbl in tables and name not in known]
        for name in missing:
            cursor.execute(f'ANALYZE "{name}"')
    return missing
