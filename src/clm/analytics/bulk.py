"""Moving NumPy columns in and out of the database fast, and rewriting a whole table.

A million rows through the ORM (or even through per-row Python tuples) costs seconds per
column; these helpers use each database's fastest plain path instead:

* reading: PostgreSQL `COPY (query) TO STDOUT (FORMAT BINARY)` parsed by NumPy as fixed-width
  records (no Python object per value); SQLite `fetchall` of the plain values.
* writing: PostgreSQL binary COPY built by NumPy; SQLite `executemany` of multi-row INSERTs
  into a temporary table, in one transaction.
* rewriting: secondary indexes are dropped, the table is emptied and refilled by one
  INSERT … SELECT, then the indexes are rebuilt, which is several times faster than
  maintaining them row by row. Inside the caller's transaction: readers see the old rows
  until it commits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import connection

_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _is_pg() -> bool:
    return connection.vendor == "postgresql"


def _record_dtype(types: Sequence[str]) -> np.dtype:
    """One binary COPY tuple: field count, then (length, big-endian value) per field."""
    fields = [("n", ">i2")]
    for i, t in enumerate(types):
        fields += [(f"l{i}", ">i4"), (f"v{i}", ">" + t)]
    return np.dtype(fields)


def read_columns(sql: str, params: Sequence, types: Sequence[str]) -> list[np.ndarray]:
    """Run `sql` and return its columns as arrays of `types` ("i8", "i4", "f8").

    Precondition: no NULLs among the values (use COALESCE), so that PostgreSQL's binary rows
    have a fixed width.
    """
    with connection.cursor() as cursor:
        if not _is_pg():
            cursor.execute(sql, list(params))
            # Straight from the cursor's tuples into one structured array (no row list).
            rec = np.fromiter(cursor.cursor, dtype=np.dtype(
                [(f"v{i}", t) for i, t in enumerate(types)]))
            return [rec[f"v{i}"].copy() for i in range(len(types))]
        buf = bytearray()
        with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", list(params)) as copy:
            for chunk in copy:
                buf += chunk
    if not buf.startswith(_PG_SIGNATURE):
        raise RuntimeError("unexpected COPY output")
    offset = 19 + int.from_bytes(buf[15:19], "big")
    dtype = _record_dtype(types)
    count = (len(buf) - offset - 2) // dtype.itemsize
    rec = np.frombuffer(buf, dtype=dtype, offset=offset, count=count)
    if count and (np.any(rec["n"] != len(types)) or any(
            np.any(rec[f"l{i}"] != np.dtype(t).itemsize) for i, t in enumerate(types))):
        raise RuntimeError("NULL or variable-width value in a binary COPY read")
    return [rec[f"v{i}"].astype(t) for i, t in enumerate(types)]


def create_temp_table(table: str, columns: Sequence[tuple[str, str]], *,
                      pg_key: bool = True) -> None:
    """(Re)create the temporary `table` of (name, "i8"|"i4"|"f8") columns, the first the key.

    `pg_key=False` leaves the key without an index on PostgreSQL, for a table only ever
    joined whole (hashed): its index would be maintained row by row in the session's small
    temporary buffers for nothing.
    """
    sql_types = {"i8": "BIGINT", "i4": "INTEGER", "f8": "DOUBLE PRECISION" if _is_pg() else "REAL"}
    defs = [f"{c} {sql_types[t]}" for c, t in columns]
    # On SQLite INTEGER PRIMARY KEY makes the key the rowid: lookups need no second index.
    if not _is_pg():
        defs[0] = f"{columns[0][0]} INTEGER PRIMARY KEY"
    elif pg_key:
        defs[0] = f"{columns[0][0]} BIGINT PRIMARY KEY"
    with connection.cursor() as cursor:
        if not _is_pg():
            # Temporary tables have their own page cache (2 MB by default): a big one would
            # spill to a file. Sized like the main cache (settings), used only as needed.
            cursor.execute("PRAGMA main.cache_size")
            cursor.execute(f"PRAGMA temp.cache_size = {int(cursor.fetchone()[0])}")
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TEMPORARY TABLE {table} ({', '.join(defs)})")


def write_temp_table(table: str, columns: Sequence[tuple[str, str]],
                     arrays: Sequence[np.ndarray], chunk: int = 200_000, *,
                     pg_key: bool = True) -> None:
    """Create the temporary `table` (see create_temp_table) and fill it from `arrays`.

    A float NaN becomes NULL on SQLite and stays NaN on PostgreSQL (read it through
    NULLIF(col, 'NaN')).
    """
    create_temp_table(table, columns, pg_key=pg_key)
    names = ", ".join(c for c, _ in columns)
    n = len(arrays[0])
    with connection.cursor() as cursor:
        if not _is_pg():
            _sqlite_insert(cursor, table, names, arrays, chunk)
            return
        dtype = _record_dtype([t for _, t in columns])
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_PG_SIGNATURE + bytes(8))
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                rec = np.empty(stop - start, dtype=dtype)
                rec["n"] = len(columns)
                for i, (_, t) in enumerate(columns):
                    rec[f"l{i}"] = np.dtype(t).itemsize
                    rec[f"v{i}"] = arrays[i][start:stop]
                copy.write(rec.tobytes())
            copy.write(b"\xff\xff")


# Rows per INSERT statement on SQLite, within its 999 bound parameters per statement (the
# lowest limit of any build): one statement per row costs about as much again as the values.
SQLITE_PARAMS = 999


def _sqlite_insert(cursor, table: str, names: str, arrays: Sequence[np.ndarray],
                   chunk: int) -> None:
    """Insert `arrays` as rows, many rows per statement, values bound from flat lists."""
    width, n = len(arrays), len(arrays[0])
    per = max(1, SQLITE_PARAMS // width)
    row = f"({', '.join(['%s'] * width)})"
    many = f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * per)}"  # noqa: S608
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # The row-major flat list of this chunk's values, without a Python tuple per row.
        flat: list = [None] * (width * (stop - start))
        for i, a in enumerate(arrays):
            flat[i::width] = a[start:stop].tolist()
        full = (stop - start) // per * per
        step = per * width
        cursor.executemany(many, (flat[i:i + step] for i in range(0, full * width, step)))
        if full < stop - start:
            rest = f"INSERT INTO {table} ({names}) VALUES " + ", ".join(  # noqa: S608
                [row] * (stop - start - full))
            cursor.execute(rest, flat[full * width:])


def drop_temp_table(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")


def table_rewrite(table: str, columns: Sequence[str], selects: Sequence[str],
                  params: Sequence) -> int:
    """Replace every row of `table` by the rows of `selects` (each run with `params`);
    returns the rows written.

    Preconditions: the caller holds a transaction (the table is empty in between), the table
    has no foreign keys (they would be checked row by row and, on SQLite, stop the table being
    emptied at once) and no other table refers to it (its primary key is rebuilt).
    """
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if _is_pg():
            cursor.execute("""
                SELECT pg_get_indexdef(i.oid), i.relname FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                WHERE x.indrelid = %s::regclass
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)""",
                           [table])
            indexes = cursor.fetchall()
            # The primary key too: one sorted build after the insert beats a million inserts
            # into its B-tree (nothing refers to these tables' keys).
            cursor.execute("""SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                              WHERE conrelid = %s::regclass AND contype = 'p'""", [table])
            keys = cursor.fetchall()
            for name, _ in keys:
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {connection.ops.quote_name(name)}")
        else:
            keys = []
            cursor.execute("SELECT sql, name FROM sqlite_master WHERE type = 'index' "
                           "AND tbl_name = %s AND sql IS NOT NULL", [table])
            indexes = cursor.fetchall()
        for _, name in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        cursor.execute(f"{'TRUNCATE' if _is_pg() else 'DELETE FROM'} {table}")
        written = 0
        for select in selects:
            cursor.execute(f"INSERT INTO {table} ({quoted}) {select}", list(params))
            written += cursor.rowcount
        for name, definition in keys:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT "
                           f"{connection.ops.quote_name(name)} {definition}")
        for definition, _ in indexes:
            cursor.execute(definition)
        return written
