"""The event table's indexes: every one costs each ingested event a B-tree insert."""

import pytest
from django.db import connection


@pytest.mark.django_db
def test_contact_lookups_use_the_contact_time_index_alone():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "timeline_event")
    indexed = [c["columns"] for c in constraints.values() if c["index"] and not c["primary_key"]]
    assert ["contact_id"] not in indexed
    assert any(columns[:2] == ["contact_id", "occurred_at"] for columns in indexed)
