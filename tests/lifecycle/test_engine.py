"""Late arrivals, idempotency, manual moves and company stages."""

from __future__ import annotations

import pytest

from clm.core.errors import PermissionDenied, ValidationFailed
from clm.lifecycle import engine
from clm.lifecycle.models import ManualMove, StageChange
from clm.lifecycle.queries import contact_stage_summary
from clm.lifecycle.services import stage_move, stages_move_bulk
from clm.timeline.models import Event
from tests.factories import CompanyFactory, ContactFactory
from tests.lifecycle.conftest import day, journey

pytestmark = pytest.mark.django_db


def test_late_event_gives_the_in_order_result(emit):
    in_order, late = ContactFactory(), ContactFactory()
    for c, days in ((in_order, (0, 1, 2)), (late, (0, 2, 1))):
        for d in days:
            kind = {0: "form.submitted", 1: "deal.created", 2: "order.completed"}[d]
            emit(c, kind, d)
    assert journey(late) == journey(in_order) == [("", "lead", 1), ("lead", "opportunity", 1),
                                                  ("opportunity", "customer", 1)]
    assert list(StageChange.objects.filter(contact=late).values_list("at", "exited_at")) == \
        [(day(0), day(1)), (day(1), day(2)), (day(2), None)]


def test_late_cancel_rewrites_the_second_life(contact, emit):
    emit(contact, "order.completed", 0)
    emit(contact, "order.completed", 20)
    assert journey(contact) == [("", "customer", 1)]
    emit(contact, "subscription.canceled", 10)  # arrives late
    assert journey(contact) == [("", "customer", 1), ("customer", "churned", 1),
                                ("churned", "customer", 2)]
    keys = Event.objects.filter(contact=contact, kind="stage.changed").count()
    assert keys == 3


def test_processing_the_same_event_twice_changes_nothing(contact, emit):
    first = emit(contact, "form.submitted", 0)
    emit(contact, "order.completed", 1)
    before = list(StageChange.objects.filter(contact=contact).values())
    events_before = Event.objects.filter(contact=contact).count()
    stats = engine.events_apply([first.pk])
    engine.events_apply([first.pk])
    assert stats.moves == 0
    assert list(StageChange.objects.filter(contact=contact).values()) == before
    assert Event.objects.filter(contact=contact).count() == events_before


def test_manual_move_needs_a_reason_and_may_go_back(contact, emit, admin_user):
    emit(contact, "order.completed", 0)
    with pytest.raises(ValidationFailed) as exc:
        stage_move(contact=contact, to_stage="lead", reason="  ", actor=admin_user)
    assert exc.value.field == "reason"
    stage_move(contact=contact, to_stage="lead", reason="Bought by mistake", actor=admin_user)
    assert contact.stage == "lead"
    row = StageChange.objects.get(contact=contact, seq=2)
    assert (row.actor_type, row.actor, row.reason, row.rule) == \
        ("user", admin_user, "Bought by mistake", None)


def test_manual_move_without_permission_changes_nothing(contact, emit, make_user):
    support = make_user("support")  # sees contacts, may not move them
    emit(contact, "form.submitted", 0)
    with pytest.raises(PermissionDenied):
        stage_move(contact=contact, to_stage="customer", reason="x", actor=support)
    contact.refresh_from_db()
    assert contact.stage == "lead"
    assert not ManualMove.objects.exists()
    assert StageChange.objects.filter(contact=contact).count() == 1


def test_manual_moves_survive_a_late_event_and_a_rebuild(contact, emit, admin_user):
    emit(contact, "form.submitted", 0)
    stage_move(contact=contact, to_stage="disqualified", reason="Spam", actor=admin_user,
               at=day(5))
    emit(contact, "deal.created", 3)  # late, before the manual move
    expected = [("", "lead", 1), ("lead", "opportunity", 1), ("opportunity", "disqualified", 1)]
    assert journey(contact) == expected
    engine.rebuild_all()
    assert journey(contact) == expected


def test_bulk_move(emit, admin_user, make_user):
    contacts = [ContactFactory() for _ in range(3)]
    for c in contacts:
        emit(c, "form.submitted", 0)
    stage_move(contact=contacts[0], to_stage="sql", reason="Call done", actor=admin_user)
    moved = stages_move_bulk(contacts=contacts, to_stage="sql", reason="Event leads",
                             actor=admin_user)
    assert moved == 2
    assert {c.stage for c in type(contacts[0]).objects.filter(pk__in=[c.pk for c in contacts])} \
        == {"sql"}
    with pytest.raises(PermissionDenied):
        stages_move_bulk(contacts=contacts, to_stage="lead", reason="x",
                         actor=make_user("support"))


def test_company_follows_its_most_advanced_live_contact(emit):
    company = CompanyFactory()
    a, b = ContactFactory(company=company), ContactFactory(company=company)
    emit(a, "form.submitted", 0)
    company.refresh_from_db()
    assert company.stage == "lead"
    emit(b, "order.completed", 1)
    company.refresh_from_db()
    assert company.stage == "customer"
    emit(b, "subscription.canceled", 2)  # lost stages count only when all are lost
    company.refresh_from_db()
    assert company.stage == "lead"
    emit(a, "subscription.canceled", 3)
    company.refresh_from_db()
    assert company.stage == "churned"


def test_stage_summary_answers_first_last_latest_cumulative(contact, emit):
    emit(contact, "order.completed", 0)
    emit(contact, "subscription.canceled", 10)
    emit(contact, "order.completed", 15)
    emit(contact, "subscription.canceled", 18)
    summary = {s.stage: s for s in contact_stage_summary(contact)}
    customer = summary["customer"]
    assert customer.first_entered == day(0)
    assert customer.last_exited == day(18)
    assert customer.latest_time_in.days == 3
    assert customer.cumulative_time_in.days == 13
    assert summary["churned"].visits == 2
