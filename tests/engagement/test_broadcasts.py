"""Broadcasts: audience expansion into the outbox (idempotent), sending, stats, the API."""

from __future__ import annotations

import pytest
from django.utils import timezone

from clm.customers.services import consent_record
from clm.engagement.models import Broadcast, OutboundMessage, Suppression
from clm.engagement.outbox import outbox_send_due
from clm.engagement.queries import broadcast_stats
from clm.engagement.services import (
    broadcast_cancel,
    broadcast_create,
    broadcast_expand,
    broadcast_start,
    broadcasts_start_due,
)
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status


def _contacts(n: int, *, consent: bool = True, **kwargs):
    out = []
    for _ in range(n):
        c = ContactFactory(**kwargs)
        if consent:
            consent_record(contact=c, purpose="email_marketing", granted=True, source="form")
        out.append(c)
    return out


def _broadcast(template, sender, marketing_type, audience=None, **kw):
    return broadcast_create(data={"name": "Spring", "template": template, "sender": sender,
                                  "subscription_type": marketing_type,
                                  "audience": {"all": True} if audience is None else audience, **kw})


def test_broadcast_to_a_tag_with_stats(smtp_sink, news_template, sender, marketing_type):
    from clm.customers.models import Tag

    vips = _contacts(3)
    tag = Tag.objects.create(name="vip")
    for c in vips:
        c.tags.add(tag)
    no_consent = ContactFactory()
    no_consent.tags.add(tag)
    _contacts(2)  # not in the audience
    ContactFactory(email=None).tags.add(tag)  # no email: not queued

    b = _broadcast(news_template, sender, marketing_type, {"tag": "VIP"})
    assert b.audience == {"tag": "vip"} and b.status == Broadcast.Status.DRAFT
    b = broadcast_start(broadcast=b)
    assert b.status == Broadcast.Status.SENDING and b.total == 4
    assert broadcast_expand(broadcast=b) == 4  # re-running adds nothing

    outbox_send_due()

    assert sorted(smtp_sink.recipients) == sorted(c.email for c in vips)
    b.refresh_from_db()
    assert b.status == Broadcast.Status.DONE and b.finished_at
    stats = broadcast_stats(b)
    assert (stats.total, stats.sent, stats.suppressed, stats.queued, stats.percent) == \
        (4, 3, 1, 0, 100)
    assert Event.objects.filter(kind="email.sent", properties__broadcast_id=b.pk).count() == 3


def test_broadcast_to_a_segment(smtp_sink, news_template, sender, marketing_type):
    from clm.segments.services import segment_create

    germans = _contacts(2, country="DE")
    _contacts(2, country="FR")
    segment = segment_create(data={"name": "Germans", "definition": {"op": "and", "conditions": [
        {"type": "property", "field": "country", "op": "eq", "value": "DE"}]}})
    b = _broadcast(news_template, sender, marketing_type, {"segment": str(segment.pk)})
    assert b.audience == {"segment": segment.pk}
    b = broadcast_start(broadcast=b)
    assert b.total == 2
    outbox_send_due()
    assert sorted(smtp_sink.recipients) == sorted(c.email for c in germans)


def test_scheduled_broadcast_waits_for_its_time(smtp_sink, news_template, sender, marketing_type):
    _contacts(2)
    later = timezone.now() + timezone.timedelta(hours=1)
    b = broadcast_start(broadcast=_broadcast(news_template, sender, marketing_type,
                                             scheduled_at=later))
    assert b.status == Broadcast.Status.SCHEDULED
    assert broadcasts_start_due() == []
    assert OutboundMessage.objects.count() == 0
    assert broadcasts_start_due(now=later) == [b.pk]
    outbox_send_due()
    assert len(smtp_sink.messages) == 2


def test_cancel_skips_what_is_not_sent(news_template, sender, marketing_type):
    _contacts(2)
    b = broadcast_start(broadcast=_broadcast(news_template, sender, marketing_type))
    broadcast_cancel(broadcast=b)
    outbox_send_due()
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {S.SKIPPED}


def test_broadcast_needs_a_valid_audience(news_template, sender, marketing_type):
    from clm.core.errors import ValidationFailed

    for audience, field in (({}, "audience"), ({"segment": 999999}, "audience.segment"),
                            ({"segment": "x"}, "audience.segment"),
                            ({"colour": "red"}, "audience")):
        with pytest.raises(ValidationFailed) as exc:
            _broadcast(news_template, sender, marketing_type, audience)
        assert exc.value.field == field


# --- API -------------------------------------------------------------------------------

def test_api_templates_crud_and_errors_name_the_field(admin_api, sender):
    r = admin_api.post("/api/v1/engagement/templates", {
        "name": "Welcome", "subject": "Hi {{ first_name }}", "html_body": "<p>Hi</p><script>x</script>",
        "sender_id": sender.pk}, content_type="application/json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["html_body"] == "<p>Hi</p>" and body["text_body"] == "Hi\n"
    tid = body["id"]
    r = admin_api.patch(f"/api/v1/engagement/templates/{tid}", {"subject": "Hey {{ nope }}"},
                        content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "subject"
    r = admin_api.patch(f"/api/v1/engagement/templates/{tid}", {"subject": "Hey"},
                        content_type="application/json")
    assert r.status_code == 200 and r.json()["subject"] == "Hey"
    assert admin_api.get("/api/v1/engagement/templates").json()[0]["name"] == "Welcome"
    assert admin_api.delete(f"/api/v1/engagement/templates/{tid}").status_code == 204
    assert admin_api.get(f"/api/v1/engagement/templates/{tid}").status_code == 404


def test_api_broadcast_create_start_and_stats(admin_api, news_template, sender, marketing_type,
                                              django_capture_on_commit_callbacks, smtp_sink):
    _contacts(3)
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_api.post("/api/v1/engagement/broadcasts", {
            "name": "Now", "template_id": news_template.pk, "audience": {"all": True},
            "start": True}, content_type="application/json")
    assert r.status_code == 201, r.content
    bid = r.json()["id"]
    assert len(smtp_sink.messages) == 3  # the send task ran after commit (inline backend)
    stats = admin_api.get(f"/api/v1/engagement/broadcasts/{bid}/stats").json()
    assert stats["sent"] == 3 and stats["percent"] == 100
    assert admin_api.get(f"/api/v1/engagement/broadcasts/{bid}").json()["status"] == "done"
    r = admin_api.post("/api/v1/engagement/broadcasts", {
        "name": "Bad", "template_id": news_template.pk, "audience": {}},
        content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "audience"


def test_bounce_webhook_suppresses_the_address(admin_api, make_user, make_api_client, client,
                                               smtp_sink, receipt_template):
    from clm.engagement.outbox import message_enqueue

    contact = ContactFactory(email="gone@example.com")
    message_enqueue(purpose="a", contact=contact, template=receipt_template)
    outbox_send_due()
    mid = smtp_sink.to("gone@example.com")[0]["Message-ID"]

    assert client.post("/api/v1/engagement/bounces", {"message_id": mid, "hard": True},
                       content_type="application/json").status_code == 401
    sales_api = make_api_client(make_user("sales"))
    assert sales_api.post("/api/v1/engagement/bounces", {"message_id": mid, "hard": True},
                          content_type="application/json").status_code == 403
    assert not Suppression.objects.exists()

    for _ in range(2):  # idempotent
        r = admin_api.post("/api/v1/engagement/bounces",
                           {"message_id": mid, "hard": True, "reason": "550 5.1.1 unknown"},
                           content_type="application/json")
        assert r.status_code == 200, r.content
        assert r.json() == {"email": "gone@example.com", "hard": True, "suppressed": True}
    assert Event.objects.filter(contact=contact, kind="email.bounced").count() == 1
    assert OutboundMessage.objects.get(purpose="a").bounced_at is not None

    smtp_sink.clear()
    message_enqueue(purpose="b", contact=contact, template=receipt_template)
    outbox_send_due()
    assert smtp_sink.messages == []  # suppressed, even transactional
    r = admin_api.post("/api/v1/engagement/bounces", {"message_id": "<nope@x>", "hard": True},
                       content_type="application/json")
    assert r.status_code == 404
    r = admin_api.post("/api/v1/engagement/bounces", {"email": "soft@example.com", "hard": False},
                       content_type="application/json")
    assert r.json()["suppressed"] is False


def test_api_needs_engagement_permissions(make_user, make_api_client, news_template):
    sales = make_api_client(make_user("sales"))
    assert sales.get("/api/v1/engagement/templates").status_code == 403
    assert sales.get(f"/api/v1/engagement/templates/{news_template.pk}").status_code == 403
    r = sales.post("/api/v1/engagement/broadcasts", {
        "name": "x", "template_id": news_template.pk, "audience": {"all": True}},
        content_type="application/json")
    assert r.status_code == 403 and not Broadcast.objects.exists()


def test_api_template_list_query_count(admin_api, sender, django_assert_max_num_queries):
    from clm.engagement.services import template_save

    for n in range(5):
        template_save(data={"name": f"T{n}", "subject": "s", "html_body": "<p>x</p>",
                            "sender": sender.pk})
    with django_assert_max_num_queries(6):
        r = admin_api.get("/api/v1/engagement/templates")
    assert len(r.json()) == 5


@pytest.mark.parametrize("junk", ["x", "no-at-sign", "a@", "a b@example.com"])
def test_bounce_of_something_that_is_no_address_is_422_and_suppresses_nothing(admin_api, junk):
    r = admin_api.post("/api/v1/engagement/bounces", {"email": junk, "hard": True},
                       content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "email"
    assert not Suppression.objects.exists()


def test_nul_text_in_the_api_is_422_naming_the_field(admin_api):
    # PostgreSQL cannot store or compare NUL in text: unrefused, these were 500s there.
    r = admin_api.post("/api/v1/engagement/templates",
                       {"name": "Hi\x00", "subject": "s", "html_body": "<p>x</p>"},
                       content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = admin_api.post("/api/v1/engagement/bounces", {"message_id": "<a\x00@x>", "hard": True},
                       content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "message_id"
    r = admin_api.post("/api/v1/engagement/bounces",
                       {"email": "a@example.com", "hard": True, "reason": "\x00"},
                       content_type="application/json")
    assert r.status_code == 422 and r.json()["field"] == "reason"
    assert not Suppression.objects.exists()
