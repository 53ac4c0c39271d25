"""A stage brought by an import ("Lifecycle Stage" column of another CRM's export) moves the
contact there through the engine, forward only, so it has its history row and cause."""

from django.db import migrations

PREFIX = "Imported stage: "


def seed(apps, schema_editor):
    Rule = apps.get_model("lifecycle", "Rule")
    Stage = apps.get_model("lifecycle", "Stage")
    for stage in Stage.objects.all():
        Rule.objects.get_or_create(
            name=f"{PREFIX}{stage.label}"[:120],
            defaults={"event_kind": "import.row_applied",
                      "conditions": [{"field": "stage_key", "op": "eq", "value": stage.key}],
                      "contact_conditions": [], "target_stage_id": stage.key, "priority": 50,
                      "forward_only": True, "is_loop": False})


def unseed(apps, schema_editor):
    apps.get_model("lifecycle", "Rule").objects.filter(name__startswith=PREFIX).delete()


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0003_rule_created_by_user")]
    operations = [migrations.RunPython(seed, unseed)]
