"""Duplicate candidates and contact merge: everything moves, loser values are kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clm.core.errors import NotFound, PermissionDenied, ValidationFailed
from clm.customers.merging import contact_merge, duplicate_groups, merge_contacts_for
from clm.customers.models import ConsentRecord, Contact, FieldChange, MergeRecord
from clm.customers.queries import contacts_visible
from clm.customers.services import consent_record, contact_create, note_add
from clm.timeline.models import Event
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db


def test_duplicate_groups_by_phone_email_name_and_company(admin_user, django_assert_max_num_queries):
    acme = CompanyFactory(name="Acme")
    a = ContactFactory(first_name="Ann", last_name="Lee", phone="+14155550100")
    b = ContactFactory(first_name="Anne", last_name="Other", phone="+14155550100")
    c = ContactFactory(first_name="Bob", last_name="Stone", email="bob.stone@gmail.com")
    d = ContactFactory(first_name="Robert", last_name=" stone", email="bob.stone@acme.example")
    e = ContactFactory(first_name="Eve", last_name="Ng", company=acme, email="eve@one.example")
    f = ContactFactory(first_name="EVE ", last_name="ng", company=acme, email="e.ng@two.example")
    ContactFactory(first_name="Eve", last_name="Ng", email="evelyn@other.example")  # no company
    ContactFactory(first_name="Solo", last_name="Lee", phone="+14155550199")
    with django_assert_max_num_queries(6):
        groups = duplicate_groups(contacts_visible(admin_user))
    found = {(g.reason, frozenset(x.pk for x in g.contacts)) for g in groups}
    assert found == {("phone", frozenset({a.pk, b.pk})), ("email_name", frozenset({c.pk, d.pk})),
                     ("company_name", frozenset({e.pk, f.pk}))}


def test_duplicate_groups_only_among_visible_contacts(make_user):
    sally, other = make_user("sales"), make_user("sales")
    ContactFactory(phone="+14155550100", owner=sally)
    ContactFactory(phone="+14155550100", owner=other)
    assert duplicate_groups(contacts_visible(sally)) == []


def test_merge_moves_everything_and_keeps_loser_data(admin_user):
    acme = CompanyFactory(name="Acme")
    survivor = contact_create(data={"email": "ann@example.com", "first_name": "Ann"},
                              tags=["vip"], actor=admin_user)
    loser = contact_create(data={"email": "ann.lee@example.com", "first_name": "Annie",
                                 "last_name": "Lee", "phone": "+14155550100",
                                 "company": acme.pk, "external_id": "crm-9"},
                           tags=["newsletter", "vip"], actor=admin_user)
    note_add(contact=loser, body="Met at the fair", actor=admin_user)
    consent_record(contact=loser, purpose="email", granted=True, source="form")
    older = ContactFactory(email="ann.old@example.com", first_name="A",
                           properties={"legacy": 1}, city="Oslo",
                           created_at=timezone.now() - timedelta(days=400))
    MergeRecord.objects.create(survivor=older, loser_id=999, loser_data={}, merged_at=older.created_at)
    loser_events = set(loser.events.values_list("pk", flat=True))

    merged = contact_merge(survivor=survivor, losers=[loser, older], actor=admin_user)

    assert not Contact.objects.filter(pk__in=[loser.pk, older.pk]).exists()
    assert set(merged.events.values_list("pk", flat=True)) >= loser_events
    assert ConsentRecord.objects.get().contact == merged
    assert sorted(merged.tags.values_list("name", flat=True)) == ["newsletter", "vip"]
    # Empty fields filled from the losers, own values kept.
    assert (merged.first_name, merged.last_name, merged.phone, merged.company, merged.city) == (
        "Ann", "Lee", "+14155550100", acme, "Oslo")
    assert merged.external_id == "crm-9"
    assert merged.email == "ann@example.com"
    assert merged.properties == {"legacy": 1}
    assert merged.created_at == older.created_at
    records = {r.loser_id: r for r in MergeRecord.objects.filter(survivor=merged)}
    assert set(records) == {loser.pk, older.pk, 999}  # the older merge moved along
    assert records[loser.pk].loser_data["first_name"] == "Annie"
    assert records[loser.pk].loser_data["email"] == "ann.lee@example.com"
    assert records[loser.pk].loser_data["tags"] == ["newsletter", "vip"]
    assert records[loser.pk].merged_by == admin_user
    event = merged.events.get(kind="contact.merged")
    assert event.properties["loser_ids"] == [loser.pk, older.pk]
    assert "last_name" in event.properties["filled"]
    audit = FieldChange.objects.filter(object_id=merged.pk, via="merge")
    assert set(audit.values_list("field", flat=True)) >= {"merged", "last_name", "phone"}
    assert merged.search_text.startswith("ann lee")


def test_merge_refuses_self_and_empty(admin_user):
    a = ContactFactory()
    with pytest.raises(ValidationFailed):
        contact_merge(survivor=a, losers=[a], actor=admin_user)
    with pytest.raises(ValidationFailed):
        contact_merge(survivor=a, losers=[], actor=admin_user)


def test_merge_requires_visibility_and_permission(make_user):
    # A team manager may merge (and so delete) within the team's records only.
    sally, other = make_user("manager", team="east"), make_user("manager", team="west")
    mine = ContactFactory(owner=sally)
    hidden = ContactFactory(owner=other)
    with pytest.raises(NotFound):
        merge_contacts_for(sally, [mine.pk, hidden.pk])
    with pytest.raises(NotFound):
        merge_contacts_for(sally, [mine.pk, 987654])
    for role in ("support", "sales"):  # sales may not delete, so may not merge either
        with pytest.raises(PermissionDenied):
            merge_contacts_for(make_user(role), [ContactFactory().pk, mine.pk])
    mine2 = ContactFactory(owner=sally)
    assert merge_contacts_for(sally, [mine2.pk, mine.pk]) == [mine2, mine]
    assert Contact.objects.count() == 5
    assert not Event.objects.exists()
