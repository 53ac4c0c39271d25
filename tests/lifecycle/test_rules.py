"""Each seeded rule, forward-only against loop rules, and the second life after a win-back."""

from __future__ import annotations

import pytest
from django.test import override_settings

from clm.lifecycle.models import StageChange
from clm.timeline.models import Event
from tests.lifecycle.conftest import day, journey

pytestmark = pytest.mark.django_db


def test_subscribe_form_makes_a_subscriber(contact, emit):
    emit(contact, "form.submitted", 0, form_type="subscribe")
    assert contact.stage == "subscriber"


def test_other_form_makes_a_lead(contact, emit):
    emit(contact, "form.submitted", 0, form_type="contact_us")
    assert contact.stage == "lead"


def test_form_without_type_makes_a_lead(contact, emit):
    emit(contact, "form.submitted", 0)
    assert contact.stage == "lead"


@pytest.mark.parametrize(("source", "stage"),
                         [("import", "lead"), ("api", "lead"), ("ingest", "lead"), ("ui", "lead"),
                          ("system", "subscriber")])
def test_contact_created_by_import_api_or_a_user_is_a_lead(contact, emit, source, stage):
    emit(contact, "contact.created", 0, source=source)
    assert contact.stage == stage


def test_lead_score_reaching_threshold_makes_an_mql(contact, emit):
    emit(contact, "form.submitted", 0)
    emit(contact, "lead.scored", 1, lead_score=49)
    assert contact.stage == "lead"
    emit(contact, "lead.scored", 2, lead_score=50)
    assert contact.stage == "mql"


@override_settings(CLM_MQL_SCORE_THRESHOLD=80)
def test_threshold_is_a_setting(contact, emit):
    emit(contact, "lead.scored", 1, lead_score=79)
    assert contact.stage == ""
    emit(contact, "lead.scored", 2, lead_score="85")
    assert contact.stage == "mql"


def test_lead_score_contact_property_makes_an_mql(contact, emit):
    emit(contact, "contact.updated", 1, changes={"properties.lead_score": ["10", "60"]})
    assert contact.stage == "mql"


@pytest.mark.parametrize(("kind", "stage"), [
    ("lead.accepted", "sql"), ("deal.created", "opportunity"), ("order.completed", "customer"),
    ("deal.won", "customer"), ("invoice.paid", "customer"), ("referral.converted", "promoter"),
])
def test_kind_moves_to_stage(contact, emit, kind, stage):
    emit(contact, "form.submitted", 0)
    emit(contact, kind, 1)
    assert contact.stage == stage


@pytest.mark.parametrize(("score", "stage"), [(8, "customer"), (9, "promoter"), (10, "promoter")])
def test_nps_nine_or_ten_makes_a_promoter(contact, emit, score, stage):
    emit(contact, "order.completed", 0)
    emit(contact, "nps.answered", 1, score=score)
    assert contact.stage == stage


def test_forward_only_rules_never_move_back(contact, emit):
    emit(contact, "order.completed", 0)
    emit(contact, "form.submitted", 1)
    emit(contact, "deal.created", 2)
    assert contact.stage == "customer"
    assert journey(contact) == [("", "customer", 1)]


def test_cancel_churns_and_an_order_wins_back_into_a_second_life(contact, emit):
    emit(contact, "form.submitted", 0)
    emit(contact, "order.completed", 1)
    emit(contact, "subscription.canceled", 30)
    assert contact.stage == "churned"
    emit(contact, "deal.created", 31)  # forward-only: no way back to opportunity
    assert contact.stage == "churned"
    emit(contact, "order.completed", 40)
    assert contact.stage == "customer"
    assert journey(contact) == [("", "lead", 1), ("lead", "customer", 1),
                                ("customer", "churned", 1), ("churned", "customer", 2)]
    second = StageChange.objects.get(contact=contact, seq=4)
    assert second.rule.name.startswith("Win-back")
    assert second.cause_event.kind == "order.completed"


def test_history_rows_carry_time_cause_and_exit(contact, emit):
    first = emit(contact, "form.submitted", 0)
    emit(contact, "order.completed", 3)
    rows = list(StageChange.objects.filter(contact=contact).order_by("seq"))
    assert rows[0].at == day(0) and rows[0].exited_at == day(3)
    assert rows[0].duration.days == 3
    assert rows[0].cause_event_id == first.pk and rows[0].actor_type == "rule"
    assert rows[1].exited_at is None


def test_every_move_records_a_stage_changed_event_that_does_not_loop(contact, emit):
    emit(contact, "form.submitted", 0)
    emit(contact, "order.completed", 1)
    events = Event.objects.filter(contact=contact, kind="stage.changed").order_by("occurred_at")
    assert [(e.properties["from"], e.properties["to"]) for e in events] == \
        [("", "lead"), ("lead", "customer")]
    assert StageChange.objects.filter(contact=contact).count() == 2


@override_settings(CLM_CHURN_AFTER_DAYS=30)
def test_no_purchase_for_n_days_churns_via_the_scheduled_job(contact, emit):
    from clm.lifecycle.tasks import lifecycle_churn_inactive

    emit(contact, "order.completed", 0)
    # processed long after day 30: the engine already applies what is due by now
    assert contact.stage == "churned"
    change = StageChange.objects.get(contact=contact, to_stage="churned")
    assert change.at == day(30) and change.actor_type == "system" and change.cause_event is None
    lifecycle_churn_inactive.enqueue()
    assert StageChange.objects.filter(contact=contact).count() == 2


def test_inactivity_job_churns_when_due(contact, emit, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from clm.lifecycle.models import ContactState
    from clm.lifecycle.tasks import lifecycle_churn_inactive

    recent = timezone.now() - timedelta(days=2)
    emit(contact, "order.completed", recent)
    assert contact.stage == "customer"
    state = ContactState.objects.get(contact=contact)
    assert state.churn_due_at == recent + timedelta(days=365)
    with override_settings(CLM_CHURN_AFTER_DAYS=1), django_capture_on_commit_callbacks(execute=True):
        ContactState.objects.filter(pk=state.pk).update(churn_due_at=recent + timedelta(days=1))
        lifecycle_churn_inactive.enqueue()
    contact.refresh_from_db()
    assert contact.stage == "churned"
