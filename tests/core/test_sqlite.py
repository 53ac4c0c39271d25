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
