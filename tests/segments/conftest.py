"""Fixtures of the segments tests: a small population with events, purchases and scores."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from clm.analytics.models import ContactScore, Transaction
from clm.customers.models import ObjectType, PropertyDefinition, Tag
from clm.timeline.models import Event
from tests.factories import CompanyFactory, ContactFactory


def add_events(contact, kind: str, *days_ago: float) -> None:
    now = timezone.now()
    Event.objects.bulk_create([
        Event(contact=contact, kind=kind, occurred_at=now - timedelta(days=d), recorded_at=now,
              source="test") for d in days_ago])


def add_score(contact, **fields) -> ContactScore:
    """A score row; the health score is derived from its parts (p_alive, nps, events, …)."""
    return ContactScore.objects.create(contact=contact, as_of=timezone.localdate(), **fields)


@pytest.fixture
def people(db):
    """Named contacts covering every condition type (see each attribute's comment)."""
    acme = CompanyFactory(name="Acme", industry="software", employee_band="51-200",
                          revenue_band="10m-50m", country="DE")
    shop = CompanyFactory(name="Shop", industry="retail", employee_band="1-10", country="FR")
    PropertyDefinition.objects.create(object_type=ObjectType.CONTACT, key="plan", label="Plan",
                                      type="choice", choices=["free", "pro"])
    PropertyDefinition.objects.create(object_type=ObjectType.CONTACT, key="seats", label="Seats",
                                      type="number")
    PropertyDefinition.objects.create(object_type=ObjectType.CONTACT, key="vip", label="VIP",
                                      type="boolean")
    golf, wine = Tag.objects.create(name="golf"), Tag.objects.create(name="wine")

    class P:
        pass

    p = P()
    # ann: German, 25-34, software company, 3 orders this year, champion, p_alive .9
    p.ann = ContactFactory(first_name="Ann", country="DE", region="Berlin", city="Berlin",
                           age_band="25-34", income_band="high", company=acme, stage="customer",
                           properties={"plan": "pro", "seats": 12, "vip": True})
    p.ann.tags.add(golf, wine)
    add_events(p.ann, "order.completed", 5, 40, 100)
    add_score(p.ann, rfm_segment="champions", clv_decile=10, p_alive=0.9, nps=5.5)  # health 80
    # bob: French, retail company, one old order (400 days), at risk, p_alive .3
    p.bob = ContactFactory(first_name="Bob", country="FR", city="Paris", age_band="35-44",
                           company=shop, stage="churned", properties={"plan": "free", "seats": 2})
    p.bob.tags.add(wine)
    add_events(p.bob, "order.completed", 400)
    add_events(p.bob, "email.opened", 1, 2)
    add_score(p.bob, rfm_segment="at risk", clv_decile=3, p_alive=0.3, events_30d=1,
              events_prev_90d=87)  # health 20
    # cat: German, no company, a lead; one order 10 days ago recorded only as a Transaction
    p.cat = ContactFactory(first_name="Cat", country="DE", stage="lead", properties={})
    Transaction.objects.create(contact=p.cat, occurred_at=timezone.now() - timedelta(days=10),
                               occurred_on=timezone.localdate(), amount=Decimal("9.50"), currency="EUR",
                               source="import", created_at=timezone.now())
    add_score(p.cat, rfm_segment="new", clv_decile=6, p_alive=0.6, nps=4.25)  # health 55
    # dan: no country, no score, nothing
    p.dan = ContactFactory(first_name="Dan", stage="subscriber")
    return p
