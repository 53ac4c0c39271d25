"""Segments services: create/update validation, snapshots, static lists, the periodic
evaluation with its segment.entered / segment.left events, and behaviour counters."""

from __future__ import annotations

import pytest
from django.utils import timezone

from clm.core.errors import Conflict, ValidationFailed
from clm.core.scheduler import declared_jobs
from clm.customers.models import Contact
from clm.segments import services, tasks
from clm.segments.models import BehaviourCounter, BehaviourWindow, Segment, SegmentMembership
from clm.segments.queries import segment_contact_ids
from clm.timeline.models import Event
from tests.factories import ContactFactory
from tests.segments.conftest import add_events

GERMANS = {"op": "and", "conditions": [{"type": "property", "field": "country", "op": "eq",
                                        "value": "DE"}]}
BUYERS = {"op": "and", "conditions": [{"type": "event", "kind": "order.completed",
                                       "op": "did", "days": 30}]}


def members(segment) -> set[str]:
    return set(Contact.objects.filter(segment_memberships__segment=segment)
               .values_list("first_name", flat=True))


def test_create_validates_the_definition_and_names(people):
    with pytest.raises(ValidationFailed) as info:
        services.segment_create(data={"name": "Bad", "definition": {
            "op": "and", "conditions": [{"type": "stage", "op": "has"}]}})
    assert info.value.field == "definition.conditions[0].op"
    with pytest.raises(ValidationFailed) as info:
        services.segment_create(data={"name": " ", "definition": GERMANS})
    assert info.value.field == "name"
    services.segment_create(data={"name": "Germans", "definition": GERMANS})
    with pytest.raises(Conflict):
        services.segment_create(data={"name": "Germans", "definition": GERMANS})
    with pytest.raises(ValidationFailed) as info:
        services.segment_create(data={"name": "L", "kind": "static", "definition": GERMANS})
    assert info.value.field == "definition"
    assert Segment.objects.count() == 1


def test_segment_contact_ids_dynamic_and_static(people):
    dynamic = services.segment_create(data={"name": "Germans", "definition": GERMANS})
    assert set(segment_contact_ids(dynamic)) == {people.ann.pk, people.cat.pk}
    static = services.segment_create(data={"name": "List", "kind": "static"})
    services.static_members_add(segment=static, contacts=Contact.objects.all(),
                                contact_ids=[people.bob.pk, people.dan.pk, people.bob.pk])
    assert set(segment_contact_ids(static)) == {people.bob.pk, people.dan.pk}


def test_snapshot_writes_a_static_list(people, django_assert_max_num_queries):
    dynamic = services.segment_create(data={"name": "Germans", "definition": GERMANS})
    with django_assert_max_num_queries(12):
        snapshot = services.segment_snapshot(segment=dynamic, name="Germans today")
    assert snapshot.kind == Segment.Kind.STATIC and snapshot.member_count == 2
    assert members(snapshot) == {"Ann", "Cat"}
    # A snapshot does not follow later changes.
    Contact.objects.filter(pk=people.cat.pk).update(country="AT")
    assert members(snapshot) == {"Ann", "Cat"}
    assert set(segment_contact_ids(snapshot)) == {people.ann.pk, people.cat.pk}
    limited = services.segment_snapshot(segment=dynamic,
                                        within=Contact.objects.filter(pk=people.ann.pk))
    assert members(limited) == {"Ann"}


def test_static_members_by_hand(people):
    static = services.segment_create(data={"name": "List", "kind": "static"})
    visible = Contact.objects.exclude(pk=people.dan.pk)
    assert services.static_members_add(segment=static, contacts=visible,
                                       contact_ids=[people.ann.pk, people.bob.pk]) == 2
    assert services.static_members_add(segment=static, contacts=visible,
                                       contact_ids=[people.ann.pk]) == 0
    with pytest.raises(ValidationFailed) as info:  # not visible: refused, nothing changes
        services.static_members_add(segment=static, contacts=visible, contact_ids=[people.dan.pk])
    assert info.value.field == "contact_ids"
    assert services.static_members_remove(segment=static, contacts=visible,
                                          contact_ids=[people.ann.pk]) == 1
    static.refresh_from_db()
    assert members(static) == {"Bob"} and static.member_count == 1
    dynamic = services.segment_create(data={"name": "Germans", "definition": GERMANS})
    with pytest.raises(ValidationFailed):
        services.static_members_add(segment=dynamic, contacts=visible, contact_ids=[people.ann.pk])


def segment_events(kind: str) -> list[tuple[str, dict]]:
    return sorted((e.contact.first_name, e.properties) for e in
                  Event.objects.filter(kind=kind).select_related("contact"))


def test_evaluation_records_entered_and_left_once(people, django_assert_max_num_queries):
    segment = services.segment_create(data={"name": "Recent buyers", "definition": BUYERS})
    first = services.segments_evaluate()
    assert first.segments[0].baseline and first.events == 0
    assert members(segment) == {"Ann"}
    assert not Event.objects.filter(kind__startswith="segment.").exists()

    # Cat buys, Ann's recent order is moved out of the window.
    add_events(people.cat, "order.completed", 1)
    Event.objects.filter(contact=people.ann, kind="order.completed").update(
        occurred_at=timezone.now() - timezone.timedelta(days=60))
    with django_assert_max_num_queries(40):
        run = services.segments_evaluate()
    assert (run.segments[0].entered, run.segments[0].left, run.events) == (1, 1, 2)
    assert members(segment) == {"Cat"}
    props = {"segment_id": segment.pk, "segment_name": "Recent buyers"}
    assert segment_events("segment.entered") == [("Cat", props)]
    assert segment_events("segment.left") == [("Ann", props)]

    # Idempotent: nothing changed, nothing recorded.
    again = tasks.segments_evaluate.call()
    assert again == 0
    assert Event.objects.filter(kind__startswith="segment.").count() == 2
    segment.refresh_from_db()
    assert segment.member_count == 1 and segment.last_evaluated_at is not None


def test_evaluation_follows_definition_changes_and_skips_paused(people):
    segment = services.segment_create(data={"name": "Germans", "definition": GERMANS})
    paused = services.segment_create(data={"name": "Paused", "definition": GERMANS,
                                           "active": False})
    services.segments_evaluate()
    services.segment_update(segment=segment, data={"definition": {
        "op": "or", "conditions": [{"type": "property", "field": "country", "op": "eq",
                                    "value": "FR"}]}})
    run = services.segments_evaluate()
    assert [(e.entered, e.left) for e in run.segments] == [(1, 2)]
    assert members(segment) == {"Bob"}
    assert not SegmentMembership.objects.filter(segment=paused).exists()


def test_behaviour_counters_refresh_and_prune(people):
    segment = services.segment_create(data={"name": "Buyers", "definition": {
        "op": "and", "conditions": [{"type": "event", "kind": "order.completed", "op": "did",
                                     "count": 2, "days": 365}]}})
    services.segments_evaluate()
    window = BehaviourWindow.objects.get()
    assert (window.kind, window.days, window.contacts) == ("order.completed", 365, 1)
    assert BehaviourCounter.objects.get(window=window).count == 3
    assert members(segment) == {"Ann"}
    services.segment_update(segment=segment, data={"active": False})
    services.segments_evaluate()
    assert not BehaviourWindow.objects.exists() and not BehaviourCounter.objects.exists()


def test_schedule_declares_the_evaluation():
    assert ("segments.evaluate", "clm.segments.tasks.segments_evaluate", 900) in declared_jobs()


def test_delete_removes_memberships(people):
    static = services.segment_create(data={"name": "List", "kind": "static"})
    services.static_members_add(segment=static, contacts=Contact.objects.all(),
                                contact_ids=[ContactFactory().pk])
    services.segment_delete(segment=static)
    assert not SegmentMembership.objects.exists()


def test_contacts_in_segment_hook(people, make_user):
    from clm.core.errors import NotFound
    from clm.segments.queries import contacts_in_segment
    from tests.segments.test_api import grant

    segment = services.segment_create(data={"name": "Germans", "definition": GERMANS})
    user = make_user("support", username="sue")  # support has no segments permission
    qs = Contact.objects.all()
    with pytest.raises(NotFound):  # no segments permission
        contacts_in_segment(qs, segment.pk, user)
    grant(user, "view_segment")
    user = type(user).objects.get(pk=user.pk)
    assert contacts_in_segment(qs, None, user) is qs
    assert set(contacts_in_segment(qs, str(segment.pk), user)
               .values_list("first_name", flat=True)) == {"Ann", "Cat"}
    for bad in ("x", "999999", "1" * 30):
        with pytest.raises(NotFound):
            contacts_in_segment(qs, bad, user)
