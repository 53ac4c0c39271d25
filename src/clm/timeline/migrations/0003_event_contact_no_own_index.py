"""Event.contact loses its own index (event_contact_time leads with the contact).

By hand: Django's AlterField would copy the whole event table on SQLite (tens of millions of
rows) to drop one index; here the index is dropped by name, found by introspection.
"""

import django.db.models.deletion
from django.db import migrations, models


def _contact_only_indexes(schema_editor) -> list[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "timeline_event")
    return [name for name, c in constraints.items()
            if c["index"] and not c["unique"] and not c["primary_key"]
            and c["columns"] == ["contact_id"]]


def drop_index(apps, schema_editor) -> None:
    for name in _contact_only_indexes(schema_editor):
        schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_index(apps, schema_editor) -> None:
    if not _contact_only_indexes(schema_editor):
        schema_editor.execute('CREATE INDEX "timeline_event_contact_id" '
                              'ON "timeline_event" ("contact_id")')


class Migration(migrations.Migration):

    dependencies = [
        ("customers", "0002_contact_search_indexes"),
        ("timeline", "0002_event_time_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="contact",
                    field=models.ForeignKey(db_index=False,
                                            on_delete=django.db.models.deletion.CASCADE,
                                            related_name="events", to="customers.contact"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
