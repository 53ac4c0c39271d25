"""Staff UI: permissions, template preview with a real contact, broadcasts with progress,
the outbox with failures visible."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from clm.customers.services import consent_record
from clm.engagement.models import Broadcast, EmailTemplate, OutboundMessage
from clm.engagement.outbox import message_enqueue
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(make_user):
    user = make_user("marketing", username="mia")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="engagement"))
    client = Client()
    client.force_login(user)
    return client


PAGES = ["/engagement/templates/", "/engagement/templates/new/", "/engagement/senders/",
         "/engagement/subscriptions/", "/engagement/broadcasts/", "/engagement/broadcasts/new/",
         "/engagement/outbox/"]


def test_pages_need_engagement_permissions(make_user, marketer):
    sales = Client()
    sales.force_login(make_user("sales"))
    for url in PAGES:
        assert sales.get(url).status_code == 403, url
        assert marketer.get(url).status_code == 200, url
    assert Client().get(PAGES[0]).status_code == 302  # login first


def test_create_template_in_the_ui_and_preview_with_a_real_contact(marketer, sender,
                                                                  marketing_type):
    r = marketer.post("/engagement/templates/new/", {
        "name": "Hello", "subject": "Hi {{ frist_name }}", "html_body": "<p>x</p>"})
    assert r.status_code == 200 and b"unknown merge field" in r.content
    assert b'id="subject-errors"' in r.content
    r = marketer.post("/engagement/templates/new/", {
        "name": "Hello", "subject": 'Hi {{ first_name|default:"there" }}',
        "html_body": "<p>Dear {{ first_name }}</p>", "sender": sender.pk,
        "subscription_type": marketing_type.pk})
    template = EmailTemplate.objects.get(name="Hello")
    assert r.status_code == 302 and r["Location"] == f"/engagement/templates/{template.pk}/preview/"
    ada = ContactFactory(first_name="Ada", email="ada@example.com")
    page = marketer.get(f"/engagement/templates/{template.pk}/preview/?contact={ada.pk}")
    assert page.status_code == 200
    assert b'<span id="preview-subject">Hi Ada</span>' in page.content
    assert b"Dear Ada" in page.content
    found = marketer.get(f"/engagement/templates/{template.pk}/preview/?q=ada")
    assert f"?contact={ada.pk}".encode() in found.content


def test_preview_of_a_contact_the_user_may_not_see_is_404(make_user, news_template):
    user = make_user("sales")
    user.user_permissions.add(Permission.objects.get(codename="view_emailtemplate"))
    client = Client()
    client.force_login(user)
    other = ContactFactory()  # owned by nobody: a sales user (own scope) cannot see it
    r = client.get(f"/engagement/templates/{news_template.pk}/preview/?contact={other.pk}")
    assert r.status_code == 404


@pytest.mark.parametrize("junk", ["²", "9" * 5000, "abc", "-1"])
def test_preview_and_broadcast_form_with_a_junk_id_are_not_500(marketer, news_template, junk):
    r = marketer.get(f"/engagement/templates/{news_template.pk}/preview/", {"contact": junk})
    assert r.status_code == 404
    r = marketer.get("/engagement/broadcasts/new/", {"template": junk})
    assert r.status_code == 200


def test_preview_search_with_nul_is_a_400_not_a_500(marketer, news_template):
    ContactFactory(first_name="Ada", email="ada@example.com")
    r = marketer.get(f"/engagement/templates/{news_template.pk}/preview/", {"q": "ada\x00"})
    assert r.status_code == 400 and "“q”" in r.content.decode()  # core.nul middleware
    r = marketer.get(f"/engagement/templates/{news_template.pk}/preview/", {"q": "ada"})
    assert r.status_code == 200 and b"ada@example.com" in r.content


def test_broadcast_create_start_and_progress_fragment(marketer, news_template, sender,
                                                      marketing_type, smtp_sink):
    for _ in range(2):
        c = ContactFactory()
        consent_record(contact=c, purpose="email_marketing", granted=True, source="form")
    r = marketer.post("/engagement/broadcasts/new/", {
        "name": "Spring", "template": news_template.pk, "sender": sender.pk,
        "subscription_type": marketing_type.pk, "everyone": "on"})
    b = Broadcast.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/engagement/broadcasts/{b.pk}/"
    detail = marketer.get(r["Location"])
    assert b"Send now" in detail.content
    r = marketer.post(f"/engagement/broadcasts/{b.pk}/start/")
    assert r.status_code == 302
    fragment = marketer.get(f"/engagement/broadcasts/{b.pk}/progress/")
    assert b'hx-trigger="every 2s"' in fragment.content  # still sending: keeps polling
    assert b"0 of 2 processed" in fragment.content
    from clm.engagement.outbox import outbox_send_due

    outbox_send_due()
    fragment = marketer.get(f"/engagement/broadcasts/{b.pk}/progress/")
    assert b"2 of 2 processed (100%)" in fragment.content
    assert b"hx-trigger" not in fragment.content  # done: polling stops


def test_sending_and_cancelling_a_broadcast_ask_for_confirmation(marketer, news_template,
                                                                  sender, marketing_type):
    marketer.post("/engagement/broadcasts/new/", {
        "name": "Spring", "template": news_template.pk, "sender": sender.pk,
        "subscription_type": marketing_type.pk, "everyone": "on"})
    b = Broadcast.objects.get()
    page = marketer.get(f"/engagement/broadcasts/{b.pk}/").content.decode()
    for action in ("start", "cancel"):
        form_tag = page.split(f'action="/engagement/broadcasts/{b.pk}/{action}/"')[1][:200]
        assert "return confirm(" in form_tag.split(">")[0], action


def test_broadcast_form_errors(marketer, news_template, sender, marketing_type):
    r = marketer.post("/engagement/broadcasts/new/", {
        "name": "x", "template": news_template.pk, "sender": sender.pk,
        "subscription_type": marketing_type.pk})
    assert r.status_code == 200 and b"Choose a tag or stage" in r.content
    assert not Broadcast.objects.exists()


def test_outbox_shows_failures_with_bounded_queries(marketer, smtp_sink, receipt_template,
                                                    django_assert_max_num_queries):
    smtp_sink.reject = {"gone@example.com": "550 5.1.1 No such user"}
    message_enqueue(purpose="a", contact=ContactFactory(email="gone@example.com"),
                    template=receipt_template)
    for n in range(10):
        message_enqueue(purpose=f"b{n}", contact=ContactFactory(), template=receipt_template)
    from clm.engagement.outbox import outbox_send_due

    outbox_send_due()
    with django_assert_max_num_queries(12):
        page = marketer.get("/engagement/outbox/?status=failed")
    assert page.status_code == 200
    assert b"550 5.1.1 No such user" in page.content
    assert page.content.count(b'class="last-error"') == 1
    assert OutboundMessage.objects.filter(status="sent").count() == 10


def test_senders_and_subscription_types_forms(marketer):
    r = marketer.post("/engagement/senders/new/", {"name": "Shop", "email": "not-an-email"})
    assert r.status_code == 200
    r = marketer.post("/engagement/senders/new/", {"name": "Shop", "email": "shop@x.example",
                                                   "is_default": "on"})
    assert r.status_code == 302
    r = marketer.post("/engagement/subscriptions/new/", {"key": "tips", "label": "Tips",
                                                         "is_marketing": "on"})
    assert r.status_code == 302
    r = marketer.post("/engagement/subscriptions/new/", {"key": "tips", "label": "Again"})
    assert r.status_code == 200 and b"exists" in r.content
