"""One-click unsubscribe (RFC 8058), the preference page and tracking links, end to end:
the links are taken from emails that arrived at the SMTP sink."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from clm.customers.models import ConsentRecord
from clm.customers.services import consent_record
from clm.engagement import tokens
from clm.engagement.models import OutboundMessage, SubscriptionType
from clm.engagement.outbox import message_enqueue, outbox_send_due
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status


def _path(url: str) -> str:
    return url.removeprefix("https://clm.example")


@pytest.fixture
def fan(db):
    contact = ContactFactory(email="fan@example.com", first_name="Fay")
    consent_record(contact=contact, purpose="email_marketing", granted=True, source="form")
    return contact


@pytest.fixture
def delivered(smtp_sink, news_template, fan):
    message_enqueue(purpose="promo:1", contact=fan, template=news_template)
    outbox_send_due()
    [mail] = smtp_sink.to("fan@example.com")
    return mail


def test_one_click_unsubscribe_from_the_header_then_no_more_marketing(
        delivered, smtp_sink, news_template, receipt_template, fan):
    url = re.search(r"<(https://[^>]+)>", delivered["List-Unsubscribe"]).group(1)
    client = Client(enforce_csrf_checks=True)

    page = client.get(_path(url))
    assert page.status_code == 200 and b"<button" in page.content
    assert ConsentRecord.objects.filter(contact=fan, granted=False).count() == 0  # GET: no change

    # What a mail provider sends (RFC 8058): a POST with no cookie and no CSRF token.
    response = client.post(_path(url), {"List-Unsubscribe": "One-Click"})
    again = client.post(_path(url), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200 and again.status_code == 200
    withdrawn = ConsentRecord.objects.filter(contact=fan, purpose="email_marketing", granted=False)
    assert withdrawn.count() == 1  # idempotent
    assert withdrawn.get().source == "unsubscribe_link"
    assert Event.objects.filter(contact=fan, kind="email.unsubscribed").count() == 1
    assert OutboundMessage.objects.get(purpose="promo:1").unsubscribed_at is not None

    smtp_sink.clear()
    message_enqueue(purpose="promo:2", contact=fan, template=news_template)
    message_enqueue(purpose="order:7", contact=fan, template=receipt_template)
    outbox_send_due()
    # The marketing email is stopped; the receipt (transactional) still arrives.
    assert [m["Subject"] for m in smtp_sink.to("fan@example.com")] == ["Your receipt"]
    assert OutboundMessage.objects.get(purpose="promo:2").status == S.SUPPRESSED


def test_tampered_foreign_and_unknown_tokens_get_the_same_generic_answer(delivered, fan):
    url = re.search(r"<(https://[^>]+)>", delivered["List-Unsubscribe"]).group(1)
    token = _path(url).split("/")[3]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    unknown = tokens.unsubscribe_token(contact_id=987654, type_key="email_marketing")
    foreign = tokens.click_token(message_id=1, url="https://example.com/")
    client = Client()
    answers = set()
    for bad in (tampered, unknown, foreign, "garbage"):
        for method in (client.get, client.post):
            r = method(f"/engagement/u/{bad}/")
            answers.add((r.status_code, r.content))
    assert len(answers) == 1
    status, _ = answers.pop()
    assert status == 400
    assert not ConsentRecord.objects.filter(granted=False).exists()


def test_preference_page_records_each_change_as_consent(delivered, fan):
    SubscriptionType.objects.create(key="tips", label="Tips", is_marketing=True)
    notices = SubscriptionType.objects.create(key="service_notices", label="Service notices",
                                              is_marketing=False)
    body = delivered.get_body(("plain",)).get_content()
    url = re.search(r"Email preferences: (\S+)", body).group(1)
    client = Client()

    page = client.get(_path(url))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="email_marketing" checked' in html
    assert 'value="service_notices" checked' in html  # non-marketing: on unless opted out
    assert 'value="tips" >' in html or 'value="tips">' in html  # marketing: off until opt-in

    r = client.post(_path(url), {"types": ["tips", "service_notices"]})
    assert r.status_code == 200 and b"saved" in r.content
    latest = {c.purpose: c.granted for c in ConsentRecord.objects.filter(contact=fan)
              .order_by("occurred_at", "pk")}
    assert latest == {"email_marketing": False, "tips": True}
    assert set(ConsentRecord.objects.filter(contact=fan, source="preference_page")
               .values_list("purpose", flat=True)) == {"email_marketing", "tips"}
    assert notices.key not in latest  # unchanged: nothing written

    client.post(_path(url), {"unsubscribe_all": "1"})
    from clm.engagement.services import subscription_state

    assert subscription_state(fan) == {"email_marketing": False, "tips": False,
                                       "service_notices": False}
    assert client.get("/engagement/p/not-a-token/").status_code == 400


def test_click_redirects_only_to_the_signed_target_and_records_click_and_open(delivered, fan):
    html = delivered.get_body(("html",)).get_content()
    click = re.search(r'href="(https://clm\.example/engagement/c/[^"]+)"', html).group(1)
    pixel = re.search(r'src="(https://clm\.example/engagement/o/[^"]+)"', html).group(1)
    client = Client()

    r = client.get(_path(click))
    assert r.status_code == 302
    assert r["Location"] == "https://shop.example/new?a=1&b=2"
    client.get(_path(click))
    assert Event.objects.filter(contact=fan, kind="email.clicked").count() == 1
    assert Event.objects.filter(contact=fan, kind="email.opened").count() == 1  # click ⇒ open

    r = client.get(_path(pixel))
    assert r.status_code == 200 and r["Content-Type"] == "image/gif"
    assert Event.objects.filter(contact=fan, kind="email.opened").count() == 1

    token = _path(click).split("/")[3]
    for bad in (token[:-2] + "xx", tokens.open_token(message_id=1), "x"):
        r = client.get(f"/engagement/c/{bad}/?next=https://evil.example/")
        assert r.status_code == 404 and "Location" not in r
    # A correctly signed link cannot point anywhere but http(s).
    js = tokens.click_token(message_id=1, url="javascript:alert(1)")
    assert client.get(f"/engagement/c/{js}/").status_code == 404


def test_unsubscribe_link_in_body_of_every_marketing_email(delivered):
    html = delivered.get_body(("html",)).get_content()
    assert "https://clm.example/engagement/u/" in html
    assert "https://clm.example/engagement/p/" in html
