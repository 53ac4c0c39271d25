"""seed_demo: a deterministic, realistic population that services and queries accept."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import available_timezones

import phonenumbers
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from clm.core.seeding import DEMO_USERS, Generator, anchor_for
from clm.customers.models import Company, ConsentRecord, Contact
from clm.customers.queries import contacts_search
from clm.customers.services import search_text_for
from clm.customers.validation import age_band_for
from clm.timeline.models import Event

pytestmark = pytest.mark.django_db
AS_OF = "2026-06-30"
N = 200


def seed(*extra: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("seed_demo", "--contacts", str(N), "--as-of", AS_OF, "--no-hooks", *extra,
                 stdout=out)
    return out.getvalue()


def snapshot() -> tuple[list, dict]:
    emails = list(Contact.objects.order_by("pk").values_list("email", "first_name", "country"))
    kinds = dict(Counter(Event.objects.values_list("kind", flat=True)))
    return emails, kinds


def test_same_seed_gives_the_same_population():
    seed("--seed", "7")
    first = snapshot()
    Event.objects.all().delete()
    Contact.objects.all().delete()
    Company.objects.all().delete()
    seed("--seed", "7")
    assert snapshot() == first
    assert len(first[0]) == N


def test_another_seed_gives_other_people():
    anchor = anchor_for(date(2026, 6, 30))
    kwargs = dict(contacts=50, events_per_contact=10, anchor=anchor, owner_ids=[None] * 6,
                  tag_ids=[1, 2, 3], contact_base_id=1, company_base_id=1)

    def names(seed_value: int) -> list[str]:
        gen = Generator(seed=seed_value, **kwargs)
        list(gen.companies())
        rows, _, _ = gen.contact_rows(gen.chunk(0))
        return [r[1] + r[2] for r in rows]

    assert names(1) == names(1)
    assert names(1) != names(2)


def test_if_empty_does_nothing_the_second_time():
    seed("--if-empty")
    counts = (Contact.objects.count(), Event.objects.count(), ConsentRecord.objects.count())
    out = seed("--if-empty")
    assert "nothing to do" in out
    assert (Contact.objects.count(), Event.objects.count(),
            ConsentRecord.objects.count()) == counts
    with pytest.raises(CommandError, match="already"):
        seed()


def test_population_is_realistic_and_valid():
    out = seed()
    assert "Seeded 200 contacts" in out
    contacts = list(Contact.objects.all())
    timezones = available_timezones()
    emails = [c.email for c in contacts if c.email]
    assert len(emails) == len(set(emails)) > N * 0.8
    for c in contacts:
        if c.email:
            assert c.email == c.email.lower() and c.email.endswith(".example")
        assert c.search_text == search_text_for(c)
        assert c.timezone in timezones and len(c.country) == 2
        if c.phone:
            assert phonenumbers.is_valid_number(phonenumbers.parse(c.phone)), c.phone
        if c.date_of_birth:
            assert c.age_band == age_band_for(c.date_of_birth, date(2026, 6, 30))
        assert c.owner_id is None or c.owner.username in {u[0] for u in DEMO_USERS}
    assert Company.objects.count() == N // 20
    assert Contact.objects.filter(company__isnull=False).exists()
    assert len({c.source for c in contacts}) == 5
    assert Contact.objects.filter(source="campaign", source_detail__has_key="utm_source").exists()
    assert Contact.objects.filter(tags__isnull=False).exists()
    assert ConsentRecord.objects.filter(granted=True).exists()

    # The seeded people are found by the same search the UI uses.
    someone = next(c for c in contacts if c.email)
    assert someone in contacts_search(Contact.objects.all(), someone.last_name.lower())


def test_timeline_has_buyers_repeaters_and_lapsed_customers():
    seed()
    anchor = datetime(2026, 6, 30, tzinfo=UTC)
    assert Event.objects.filter(kind="contact.created").count() == N
    assert not Event.objects.filter(occurred_at__gt=anchor).exists()
    assert not Event.objects.filter(occurred_at__lt=anchor - timedelta(days=3 * 366)).exists()
    orders: dict[int, list] = {}
    for e in Event.objects.filter(kind="order.completed"):
        assert e.properties["currency"] == "USD"
        assert Decimal(e.properties["amount"]) > 0 and e.properties["order_id"]
        orders.setdefault(e.contact_id, []).append(e.occurred_at)
    counts = Counter(len(v) for v in orders.values())
    year_ago = anchor - timedelta(days=365)
    lapsed = [c for c, ts in orders.items() if len(ts) >= 2 and max(ts) < year_ago]
    assert counts[1] > counts.get(2, 0)  # many one-time buyers
    assert sum(n for k, n in counts.items() if k >= 4) > 0  # some loyal repeaters
    assert lapsed  # some stopped buying a year ago
    scores = [e.properties["score"] for e in Event.objects.filter(kind="nps.answered")]
    assert scores and all(0 <= s <= 10 for s in scores)
    assert Event.objects.filter(kind="ticket.closed").count() <= Event.objects.filter(
        kind="ticket.opened").count()
    assert Event.objects.filter(kind="form.submitted",
                                properties__form_type="subscribe").exists()


def test_demo_users_have_roles_and_no_usable_password(monkeypatch):
    monkeypatch.delenv("CLM_DEMO_PASSWORD", raising=False)
    seed()
    User = get_user_model()
    for username, role, team, *_ in DEMO_USERS:
        user = User.objects.get(username=username)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert not user.has_usable_password()
        assert (user.profile.team.name if user.profile.team else None) == team
