import pytest
from django.db import connection

from clm.core.sqlite import analyze_new_indexes
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite planner statistics")
def test_new_index_on_an_analysed_table_gets_statistics():
    ContactFactory.create_batch(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customers_contact")
        cursor.execute('CREATE INDEX "test_new_idx" ON customers_contact (city, created_at)')
    assert analyze_new_indexes() == ["test_new_idx"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE idx = 'test_new_idx'")
        assert cursor.fetchone()[0].startswith("5 ")  # five rows counted
    assert analyze_new_indexes() == []  # nothing left to analyse


def _wal_frames(db) -> int:
    return db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def test_wal_restarter_lets_a_long_wal_start_over(tmp_path):
    """A writer whose automatic checkpoints never let the WAL restart (here: switched off)
    finds it restarted after one step, and small again after its next write."""
    import sqlite3

    from clm.core.sqlite import WalRestarter

    path = str(tmp_path / "wal.sqlite3")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    for n in range(200):
        writer.execute("INSERT INTO t (body) VALUES (?)", ["x" * 3000 + str(n)])
    before = _wal_frames(writer)
    assert before >= 200

    restarter = WalRestarter(path, frames=100)
    assert restarter.step() is True and restarter.restarts == 1
    writer.execute("INSERT INTO t (body) VALUES ('after')")
    assert _wal_frames(writer) < 10  # written from the WAL's start again
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 201

    assert restarter.step() is False  # short now: nothing to do
    restarter.close()
    writer.close()


def test_wal_restarter_is_only_for_sqlite_files():
    from clm.core.sqlite import WalRestarter

    restarter = WalRestarter.for_database()
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        assert restarter is None
    else:
        assert restarter is not None and restarter.path == str(connection.settings_dict["NAME"])
