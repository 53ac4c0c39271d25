"""Frequency caps and quiet hours, end to end through the SMTP sink, and their arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from clm.customers.services import consent_record
from clm.engagement import policy
from clm.engagement.models import OutboundMessage
from clm.engagement.outbox import message_enqueue, outbox_send_due
from tests.factories import ContactFactory

S = OutboundMessage.Status


def _opted_in(**kwargs):
    contact = ContactFactory(**kwargs)
    consent_record(contact=contact, purpose="email_marketing", granted=True, source="form")
    return contact


@pytest.mark.django_db
def test_daily_cap_holds_the_third_marketing_email_and_sends_it_later(
        smtp_sink, news_template, receipt_template):
    contact = _opted_in(email="fan@example.com")
    for n in range(3):
        message_enqueue(purpose=f"promo:{n}", contact=contact, template=news_template)
    message_enqueue(purpose="order:1", contact=contact, template=receipt_template)

    outbox_send_due()

    # Two marketing emails (the cap) and the transactional one, which is never capped.
    assert len(smtp_sink.to("fan@example.com")) == 3
    held = OutboundMessage.objects.get(status=S.HELD)
    first_sent = OutboundMessage.objects.filter(is_marketing=True, status=S.SENT) \
        .order_by("sent_at").first()
    assert abs(held.next_attempt_at - (first_sent.sent_at + timedelta(days=1))) < timedelta(seconds=5)
    assert "Held" in held.last_error

    outbox_send_due()  # not yet due: still held, nothing sent
    assert len(smtp_sink.to("fan@example.com")) == 3

    # A day later the held email goes out (held means later, not never).
    OutboundMessage.objects.filter(status=S.SENT).update(
        sent_at=timezone.now() - timedelta(days=1, minutes=1))
    OutboundMessage.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now())
    outbox_send_due()
    assert len(smtp_sink.to("fan@example.com")) == 4
    held.refresh_from_db()
    assert held.status == S.SENT


@pytest.mark.django_db
def test_weekly_cap(smtp_sink, news_template, settings):
    settings.CLM_EMAIL_MAX_PER_DAY = 10
    settings.CLM_EMAIL_MAX_PER_WEEK = 3
    contact = _opted_in(email="weekly@example.com")
    for n in range(4):
        message_enqueue(purpose=f"promo:{n}", contact=contact, template=news_template)
    outbox_send_due()
    assert len(smtp_sink.to("weekly@example.com")) == 3
    held = OutboundMessage.objects.get(status=S.HELD)
    oldest = OutboundMessage.objects.filter(status=S.SENT).order_by("sent_at").first()
    assert abs(held.next_attempt_at - (oldest.sent_at + timedelta(days=7))) < timedelta(seconds=5)


@pytest.mark.django_db
def test_quiet_hours_in_the_contacts_time_zone(smtp_sink, news_template, settings):
    hour = timezone.now().astimezone(UTC).hour
    settings.CLM_EMAIL_QUIET_HOURS = f"{hour}-{(hour + 2) % 24}"
    sleeping = _opted_in(email="utc@example.com", timezone="UTC")
    awake = _opted_in(email="tokyo@example.com", timezone="Asia/Tokyo")  # UTC+9: not quiet
    m1, _ = message_enqueue(purpose="promo", contact=sleeping, template=news_template)
    message_enqueue(purpose="promo", contact=awake, template=news_template)

    outbox_send_due()

    assert smtp_sink.recipients == ["tokyo@example.com"]
    m1.refresh_from_db()
    assert m1.status == S.HELD
    now = timezone.now()
    expected = now.replace(hour=(hour + 2) % 24, minute=0, second=0, microsecond=0)
    if expected <= now:
        expected += timedelta(days=1)
    assert m1.next_attempt_at == expected

    # When the quiet hours are over, it goes out.
    settings.CLM_EMAIL_QUIET_HOURS = "off"
    OutboundMessage.objects.filter(pk=m1.pk).update(next_attempt_at=timezone.now())
    outbox_send_due()
    assert sorted(smtp_sink.recipients) == ["tokyo@example.com", "utc@example.com"]


def test_quiet_until_handles_wrap_around_and_time_zones(settings):
    settings.CLM_EMAIL_QUIET_HOURS = "21-8"
    # 22:30 in New York (EST, UTC-5) is quiet until 08:00 local next day = 13:00 UTC.
    at = datetime(2026, 1, 15, 3, 30, tzinfo=UTC)
    assert policy.quiet_until(at, "America/New_York") == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)
    # 06:00 local is quiet until 08:00 the same day; noon is not quiet.
    assert policy.quiet_until(datetime(2026, 1, 15, 6, tzinfo=UTC), "UTC") == \
        datetime(2026, 1, 15, 8, tzinfo=UTC)
    assert policy.quiet_until(datetime(2026, 1, 15, 12, tzinfo=UTC), "UTC") is None
    # An unknown zone falls back to the server's.
    assert policy.quiet_until(datetime(2026, 1, 15, 12, tzinfo=UTC), "Mars/Olympus") is None
    settings.CLM_EMAIL_QUIET_HOURS = "off"
    assert policy.quiet_until(at, "UTC") is None


def test_cap_until_rolling_windows(settings):
    settings.CLM_EMAIL_MAX_PER_DAY = 2
    settings.CLM_EMAIL_MAX_PER_WEEK = 5
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert policy.cap_until([], now) is None
    one = [now - timedelta(hours=1)]
    assert policy.cap_until(one, now) is None
    two = [now - timedelta(hours=1), now - timedelta(hours=3)]
    assert policy.cap_until(two, now) == now - timedelta(hours=3) + timedelta(days=1)
    week = [now - timedelta(days=d, hours=1) for d in range(1, 6)]
    assert policy.cap_until(week, now) == now - timedelta(days=5, hours=1) + timedelta(days=7)
