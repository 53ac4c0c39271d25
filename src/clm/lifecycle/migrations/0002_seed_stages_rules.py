"""Seed the default stages and rules (data, editable afterwards by an admin)."""

from django.db import migrations

STAGES = [
    ("subscriber", "Subscriber", 10, "prospect"),
    ("lead", "Lead", 20, "prospect"),
    ("mql", "Marketing qualified lead", 30, "prospect"),
    ("sql", "Sales qualified lead", 40, "prospect"),
    ("opportunity", "Opportunity", 50, "prospect"),
    ("customer", "Customer", 60, "customer"),
    ("promoter", "Promoter", 70, "customer"),
    ("churned", "Churned", 80, "lost"),
    ("disqualified", "Disqualified", 90, "lost"),
]

THRESHOLD = {"setting": "CLM_MQL_SCORE_THRESHOLD"}

# (name, event kind, conditions, contact conditions, target, priority, forward_only, is_loop)
RULES = [
    ("Win-back: order while churned", "order.completed", [],
     [{"field": "stage", "op": "eq", "value": "churned"}], "customer", 10, False, True),
    ("Subscribe form", "form.submitted",
     [{"field": "form_type", "op": "eq", "value": "subscribe"}], [], "subscriber", 100, True, False),
    ("Form submitted", "form.submitted",
     [{"field": "form_type", "op": "ne", "value": "subscribe"}], [], "lead", 100, True, False),
    ("Created by import or API", "contact.created",
     [{"field": "source", "op": "in", "value": ["import", "api"]}], [], "lead", 100, True, False),
    ("Lead score reached threshold", "lead.scored",
     [{"field": "lead_score", "op": "gte", "value": THRESHOLD}], [], "mql", 100, True, False),
    ("Lead score property reached threshold", "contact.updated",
     [{"field": "changes.properties.lead_score.1", "op": "gte", "value": THRESHOLD}], [],
     "mql", 100, True, False),
    ("Lead accepted by sales", "lead.accepted", [], [], "sql", 100, True, False),
    ("Deal created", "deal.created", [], [], "opportunity", 100, True, False),
    ("Order completed", "order.completed", [], [], "customer", 100, True, False),
    ("Deal won", "deal.won", [], [], "customer", 100, True, False),
    ("Invoice paid", "invoice.paid", [], [], "customer", 100, True, False),
    ("NPS promoter (9–10)", "nps.answered",
     [{"field": "score", "op": "gte", "value": 9}, {"field": "score", "op": "lte", "value": 10}],
     [], "promoter", 100, True, False),
    ("Referral converted", "referral.converted", [], [], "promoter", 100, True, False),
    ("Subscription canceled", "subscription.canceled", [], [], "churned", 100, False, True),
    ("No purchase for CLM_CHURN_AFTER_DAYS days", "lifecycle.inactive", [], [], "churned", 100,
     False, True),
]


def seed(apps, schema_editor):
    Stage = apps.get_model("lifecycle", "Stage")
    Rule = apps.get_model("lifecycle", "Rule")
    for key, label, order, group in STAGES:
        Stage.objects.get_or_create(key=key, defaults={"label": label, "order": order,
                                                       "group": group})
    if Rule.objects.exists():
        return
    for name, kind, conds, contact_conds, target, priority, forward, loop in RULES:
        Rule.objects.create(name=name, event_kind=kind, conditions=conds,
                            contact_conditions=contact_conds, target_stage_id=target,
                            priority=priority, forward_only=forward, is_loop=loop)


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
