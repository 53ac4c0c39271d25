"""The outbox end to end through a real SMTP server on loopback."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from clm.customers.services import consent_record
from clm.engagement.models import OutboundMessage
from clm.engagement.outbox import message_enqueue, outbox_recover_stale, outbox_send_due
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status


def test_transactional_email_arrives_once_with_html_text_and_message_id(smtp_sink, receipt_template):
    contact = ContactFactory(first_name="Ada", email="ada@example.com")
    msg, created = message_enqueue(purpose="order:1", contact=contact, template=receipt_template)
    again, created_again = message_enqueue(purpose="order:1", contact=contact,
                                           template=receipt_template)
    assert created and not created_again and again.pk == msg.pk

    report = outbox_send_due()
    outbox_send_due()  # running again sends nothing more

    assert report.sent == 1
    assert smtp_sink.recipients == ["ada@example.com"]
    mail = smtp_sink.to("ada@example.com")[0]
    assert mail["Subject"] == "Your receipt"
    assert mail["From"] == "Acme <news@acme.example>"
    assert mail["Reply-To"] == "help@acme.example"
    assert "List-Unsubscribe" not in mail  # transactional
    msg.refresh_from_db()
    assert msg.status == S.SENT and msg.sent_at and msg.attempts == 0
    assert mail["Message-ID"] == msg.provider_message_id
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Thanks for your order, Ada." in text
    assert "Thanks for your order, Ada." in html
    kinds = set(Event.objects.filter(contact=contact).values_list("kind", flat=True))
    assert {"email.sent", "email.delivered"} <= kinds


def test_marketing_needs_consent_at_send_time(smtp_sink, news_template):
    yes = ContactFactory(email="yes@example.com", first_name="")
    no = ContactFactory(email="no@example.com")
    never = ContactFactory(email="never@example.com")
    consent_record(contact=yes, purpose="email_marketing", granted=True, source="form")
    consent_record(contact=no, purpose="email_marketing", granted=True, source="form")
    for c in (yes, no, never):
        message_enqueue(purpose="promo", contact=c, template=news_template)
    # Opted out after the message was queued: consent is checked when sending.
    consent_record(contact=no, purpose="email_marketing", granted=False, source="form")

    outbox_send_due()

    assert smtp_sink.recipients == ["yes@example.com"]
    mail = smtp_sink.to("yes@example.com")[0]
    assert mail["Subject"] == "Hello there"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Unsubscribe"].strip().startswith("<https://clm.example/engagement/u/")
    assert "mailto:help@acme.example" in mail["List-Unsubscribe"]
    statuses = dict(OutboundMessage.objects.values_list("to_email", "status"))
    assert statuses == {"yes@example.com": S.SENT, "no@example.com": S.SUPPRESSED,
                        "never@example.com": S.SUPPRESSED}


def test_transactional_email_ignores_marketing_opt_out(smtp_sink, receipt_template):
    contact = ContactFactory(email="out@example.com")
    consent_record(contact=contact, purpose="email_marketing", granted=False, source="form")
    message_enqueue(purpose="order:9", contact=contact, template=receipt_template)
    outbox_send_due()
    assert smtp_sink.recipients == ["out@example.com"]


def test_temporary_failure_is_retried_with_backoff_and_permanent_failure_is_kept(
        smtp_sink, receipt_template):
    busy = ContactFactory(email="busy@example.com")
    gone = ContactFactory(email="gone@example.com")
    smtp_sink.reject = {"busy@example.com": "451 4.3.0 Try again later",
                        "gone@example.com": "550 5.1.1 No such user"}
    temp, _ = message_enqueue(purpose="t", contact=busy, template=receipt_template)
    perm, _ = message_enqueue(purpose="t", contact=gone, template=receipt_template)

    before = timezone.now()
    report = outbox_send_due()

    assert report.retried == 1 and report.failed == 1
    temp.refresh_from_db()
    perm.refresh_from_db()
    assert temp.status == S.QUEUED and temp.attempts == 1
    assert temp.next_attempt_at >= before + timedelta(seconds=59)
    assert "451" in temp.last_error
    assert perm.status == S.FAILED and "550" in perm.last_error
    assert smtp_sink.messages == []

    # Not due yet: nothing happens. Once due and the server accepts, it goes out.
    outbox_send_due()
    assert smtp_sink.messages == []
    smtp_sink.reject = {}
    OutboundMessage.objects.filter(pk=temp.pk).update(next_attempt_at=timezone.now())
    outbox_send_due()
    assert smtp_sink.recipients == ["busy@example.com"]
    temp.refresh_from_db()
    assert temp.status == S.SENT and temp.attempts == 1
    perm.refresh_from_db()
    assert perm.status == S.FAILED  # never retried


def test_connection_refused_is_a_temporary_failure(receipt_template):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    contact = ContactFactory(email="x@example.com")
    msg, _ = message_enqueue(purpose="t", contact=contact, template=receipt_template)
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                           EMAIL_HOST="127.0.0.1", EMAIL_PORT=port):
        outbox_send_due()
    msg.refresh_from_db()
    assert msg.status == S.QUEUED and msg.attempts == 1 and "connect" in msg.last_error.lower()


def test_gives_up_after_max_attempts(smtp_sink, receipt_template):
    contact = ContactFactory(email="busy@example.com")
    smtp_sink.reject = {"busy@example.com": "421 4.7.0 Busy"}
    msg, _ = message_enqueue(purpose="t", contact=contact, template=receipt_template)
    with override_settings(CLM_EMAIL_MAX_ATTEMPTS=2):
        outbox_send_due()
        OutboundMessage.objects.filter(pk=msg.pk).update(next_attempt_at=timezone.now())
        outbox_send_due()
    msg.refresh_from_db()
    assert msg.status == S.FAILED and msg.attempts == 2 and "Gave up" in msg.last_error


def test_stale_claim_of_a_dead_worker_is_recovered_without_resending(smtp_sink, receipt_template):
    """A worker killed after claiming: unsent rows go out once; handed-off rows never again."""
    a = ContactFactory(email="a@example.com")
    b = ContactFactory(email="b@example.com")
    not_handed, _ = message_enqueue(purpose="t", contact=a, template=receipt_template)
    handed, _ = message_enqueue(purpose="t", contact=b, template=receipt_template)
    dead_pid = 2 ** 22 + 12345  # above pid_max's default: no such process
    token = f"{socket.gethostname()}:{dead_pid}:abc"
    now = timezone.now()
    OutboundMessage.objects.filter(pk__in=[not_handed.pk, handed.pk]).update(
        status=S.SENDING, claim_token=token, claimed_at=now)
    OutboundMessage.objects.filter(pk=handed.pk).update(handed_off_at=now,
                                                        provider_message_id="<x@acme.example>")

    report = outbox_send_due()

    assert report.recovered == 2
    assert smtp_sink.recipients == ["a@example.com"]
    handed.refresh_from_db()
    assert handed.status == S.SENT and "not confirmed" in handed.last_error
    not_handed.refresh_from_db()
    assert not_handed.status == S.SENT


def test_live_claim_of_another_worker_is_left_alone(receipt_template):
    contact = ContactFactory(email="a@example.com")
    msg, _ = message_enqueue(purpose="t", contact=contact, template=receipt_template)
    OutboundMessage.objects.filter(pk=msg.pk).update(
        status=S.SENDING, claim_token="other-host:1:abc", claimed_at=timezone.now())
    assert outbox_recover_stale() == 0
    OutboundMessage.objects.filter(pk=msg.pk).update(
        claimed_at=timezone.now() - timedelta(hours=1))
    assert outbox_recover_stale() == 1  # the lease ran out


def test_suppressed_address_and_contact_without_email(smtp_sink, receipt_template):
    from clm.engagement.services import email_bounce_record

    bounced = ContactFactory(email="bounced@example.com")
    email_bounce_record(address="Bounced@example.com", hard=True, reason="550 user unknown")
    no_email = ContactFactory(email=None)
    m1, _ = message_enqueue(purpose="t", contact=bounced, template=receipt_template)
    m2, _ = message_enqueue(purpose="t", contact=no_email, template=receipt_template)
    outbox_send_due()
    assert smtp_sink.messages == []
    m1.refresh_from_db()
    m2.refresh_from_db()
    assert (m1.status, m2.status) == (S.SUPPRESSED, S.SKIPPED)


def test_a_worker_dying_before_the_final_dot_leaves_nothing_at_the_server(smtp_sink,
                                                                          receipt_template):
    """The hand-off point: until the final "." the SMTP server discards a cut-off message."""
    import time

    from django.core.mail import get_connection

    from clm.engagement.outbox import _deliver_smtp, build_email

    msg, _ = message_enqueue(purpose="t", contact=ContactFactory(email="a@example.com"),
                             template=receipt_template)
    backend = get_connection()
    backend.open()

    class Died(BaseException):
        pass

    def die_at_handoff() -> None:
        backend.connection.sock.close()  # what the kernel does when kill -9 ends the process
        raise Died

    with pytest.raises(Died):
        _deliver_smtp(backend, build_email(msg, []), die_at_handoff)
    time.sleep(0.2)
    assert smtp_sink.messages == []


def test_claims_never_overlap(receipt_template):
    from clm.engagement.outbox import _claim

    for n in range(3):
        message_enqueue(purpose=f"t{n}", contact=ContactFactory(), template=receipt_template)
    now = timezone.now()
    first, second, third = _claim(2, now), _claim(2, now), _claim(2, now)
    assert (len(first), len(second), third) == (2, 1, [])
    assert not {m.pk for m in first} & {m.pk for m in second}
    assert first[0].claim_token != second[0].claim_token
    assert OutboundMessage.objects.filter(status=S.SENDING).count() == 3
