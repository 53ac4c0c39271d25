"""Every contact starts in a stage: one a user creates by hand is a lead, one from any other
source a subscriber (a catch-all that runs after the specific rules); contacts the bulk ingest
API creates (source "ingest") count as created by the API."""

from django.db import migrations

NAME = "Created by a user"
CATCH_ALL = "Created (any other source)"


def seed(apps, schema_editor):
    Rule = apps.get_model("lifecycle", "Rule")
    for rule in Rule.objects.filter(name="Created by import or API"):
        rule.conditions = [{"field": "source", "op": "in", "value": ["import", "api", "ingest"]}]
        rule.save(update_fields=["conditions"])
    Stage = apps.get_model("lifecycle", "Stage")
    if Rule.objects.filter(name=NAME).exists() or not Stage.objects.filter(key="lead").exists():
        return
    Rule.objects.create(name=NAME, event_kind="contact.created",
                        conditions=[{"field": "source", "op": "in", "value": ["ui"]}],
                        contact_conditions=[], target_stage_id="lead", priority=100,
                        forward_only=True, is_loop=False)
    if Stage.objects.filter(key="subscriber").exists():
        Rule.objects.get_or_create(
            name=CATCH_ALL,
            defaults={"event_kind": "contact.created", "conditions": [], "contact_conditions": [],
                      "target_stage_id": "subscriber", "priority": 1000, "forward_only": True,
                      "is_loop": False})


def unseed(apps, schema_editor):
    apps.get_model("lifecycle", "Rule").objects.filter(name__in=[NAME, CATCH_ALL]).delete()


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0002_seed_stages_rules")]
    operations = [migrations.RunPython(seed, unseed)]
