"""StageChange.advance_s for the funnel report (see clm.lifecycle.marks), report indexes, and
the by-source funnel rollup.

The data step fills advance_s for the existing history with the current stage ranking. It is
self-contained (no app code), like every migration should be.
"""

from datetime import UTC, datetime

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

FK_INDEX = "lifecycle_stagechange_contact_id_3c7438c5"  # Django's name for the FK's own index
BATCH = 20000


def _aware(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _seconds_up(start, end):
    delta = end - start
    return delta.days * 86400 + delta.seconds + (1 if delta.microseconds else 0)


def fill_advance(apps, schema_editor):
    Stage = apps.get_model("lifecycle", "Stage")
    ReportState = apps.get_model("lifecycle", "ReportState")
    ranking = [s.key for s in Stage.objects.order_by("order", "key") if s.group != "lost"]
    ranks = {key: i + 1 for i, key in enumerate(ranking)}
    connection = schema_editor.connection
    table = "lifecycle_stagechange"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(contact_id), MAX(contact_id) FROM {table}")  # noqa: S608
        lo, hi = cursor.fetchone()
        for start in range(lo, hi + 1, BATCH) if lo is not None else ():
            cursor.execute(f"SELECT contact_id, seq, to_stage, at, life FROM {table} "  # noqa: S608
                           "WHERE contact_id >= %s AND contact_id < %s ORDER BY contact_id, seq",
                           [start, start + BATCH])
            rows = cursor.fetchall()
            updates = []
            for i, (cid, seq, stage, at, life) in enumerate(rows):
                rank = ranks.get(stage, 0)
                if not rank:
                    continue
                best = None
                for later in rows[i + 1:]:
                    if later[0] != cid:
                        break
                    if later[4] == life and ranks.get(later[2], 0) > rank:
                        later_at = _aware(later[3])
                        best = later_at if best is None or later_at < best else best
                if best is not None:
                    updates.append((_seconds_up(_aware(at), best), cid, seq))
            cursor.executemany(f"UPDATE {table} SET advance_s = %s "  # noqa: S608
                               "WHERE contact_id = %s AND seq = %s", updates)
    ReportState.objects.update_or_create(
        name="advance", defaults={"ranking": ",".join(ranking), "refreshed_at": timezone.now()})


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0002_contact_search_indexes'),
        ('lifecycle', '0004_rules_imported_stage'),
    ]

    operations = [
        migrations.CreateModel(
            name='FunnelSourceRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source', models.CharField(blank=True, max_length=50)),
                ('stage', models.CharField(max_length=32)),
                ('day', models.DateField()),
                ('advance_days', models.IntegerField(blank=True, null=True)),
                ('entries', models.IntegerField()),
            ],
        ),
        migrations.CreateModel(
            name='ReportState',
            fields=[
                ('name', models.CharField(max_length=40, primary_key=True, serialize=False)),
                ('ranking', models.TextField(blank=True)),
                ('refreshed_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RemoveIndex(
            model_name='stagechange',
            name='stagechange_stage_at',
        ),
        migrations.AddField(
            model_name='stagechange',
            name='advance_s',
            field=models.IntegerField(blank=True, help_text='Seconds (rounded up) until this contact, in this life, next entered a later funnel stage; empty if it has not (or this is not a funnel stage).', null=True),
        ),
        # Only the index goes (SQLite would copy the whole table for an AlterField).
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AlterField(
                model_name='stagechange',
                name='contact',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='stage_changes', to='customers.contact'),
            )],
            database_operations=[migrations.RunSQL(
                f'DROP INDEX IF EXISTS "{FK_INDEX}"',
                f'CREATE INDEX "{FK_INDEX}" ON "lifecycle_stagechange" ("contact_id")',
            )],
        ),
        migrations.AddIndex(
            model_name='stagechange',
            index=models.Index(fields=['to_stage', 'at', 'advance_s', 'contact_id', 'exited_at'], name='stagechange_funnel'),
        ),
        migrations.AddIndex(
            model_name='stagechange',
            index=models.Index(fields=['from_stage', 'to_stage', 'at'], name='stagechange_flow'),
        ),
        migrations.AddIndex(
            model_name='funnelsourcerollup',
            index=models.Index(fields=['day', 'stage', 'source', 'advance_days', 'entries'], name='funnelrollup_day'),
        ),
        migrations.RunPython(fill_advance, migrations.RunPython.noop),
    ]
