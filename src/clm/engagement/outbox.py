"""The outbox: queue a message once, claim it, check consent and caps, send it at most once.

Delivery guarantee: AT-MOST-ONCE. A customer who gets an email twice notices; one lost to a
crash in a window of microseconds is the lesser harm, and it stays visible. How:

1. Claim: an atomic conditional UPDATE moves due rows from queued/held to sending with this
   worker's claim token (host:pid:random); two workers can never claim the same row.
2. Hand-off: the SMTP conversation (MAIL, RCPT, DATA and the message body) runs first; just
   before the final "." that makes the server accept the message, the row's `handed_off_at`
   and Message-ID are committed. A worker killed before that point leaves an SMTP
   transaction the server discards (no final "."), and the row is safe to send again. A
   row with `handed_off_at` is never sent again.
3. Confirmation: after the server's 250 the row becomes sent (with the email.sent and
   email.delivered timeline events) at the end of the batch.
4. Recovery: rows left in "sending" by a dead worker (same host and its pid is gone, or the
   claim is older than CLM_EMAIL_CLAIM_LEASE_SECONDS) go back to queued when they were not
   handed off, and become sent (marked "delivery not confirmed") when they were.

Temporary failures (4xx replies, connection errors before the hand-off) are retried with
exponential backoff; permanent failures (5xx) become failed with the server's answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import smtplib
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from clm.customers.models import Contact
from clm.engagement import policy, tokens
from clm.engagement.models import (
    Broadcast,
    EmailTemplate,
    OutboundMessage,
    SenderIdentity,
    SubscriptionType,
    Suppression,
)
from clm.engagement.rendering import RenderError, add_tracking, contact_context, render
from clm.timeline.models import Event
from clm.timeline.services import events_record_bulk

log = logging.getLogger(__name__)
Status = OutboundMessage.Status
DUE_STATUSES = [Status.QUEUED, Status.HELD]


def claim_lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "CLM_EMAIL_CLAIM_LEASE_SECONDS", 900)))


def max_attempts() -> int:
    return int(getattr(settings, "CLM_EMAIL_MAX_ATTEMPTS", 6))


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: base * 2^(attempts-1), at most 6 hours."""
    base = int(getattr(settings, "CLM_EMAIL_RETRY_BASE_SECONDS", 60))
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 6 * 3600))


def dedupe_key_for(purpose: str, contact_id: int, step: str = "") -> str:
    """The outbox key of (purpose, contact, step); long keys are hashed to fit."""
    key = f"{purpose}|{contact_id}|{step}"
    if len(key) > 200:
        key = f"{purpose[:100]}|{contact_id}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def default_sender() -> SenderIdentity | None:
    return SenderIdentity.objects.order_by("-is_default", "pk").first()


def message_enqueue(*, purpose: str, contact: Contact, template: EmailTemplate, step: str = "",
                    sender: SenderIdentity | None = None,
                    subscription_type: SubscriptionType | None = None,
                    context: dict[str, Any] | None = None, send_after: datetime | None = None,
                    broadcast: Broadcast | None = None) -> tuple[OutboundMessage, bool]:
    """Queue one email to `contact` unless (purpose, contact, step) is already in the outbox.

    Returns (message, created). This is how a workflow step sends: purpose
    "workflow:<id>:<enrollment>", step "<step id>" — running the step twice queues once.
    Without `subscription_type`, the template's is used; with neither it is transactional.
    """
    sub_type = subscription_type or template.subscription_type
    key = dedupe_key_for(purpose, contact.pk, step)
    now = timezone.now()
    message = OutboundMessage(
        dedupe_key=key, purpose=purpose[:100], step=step[:100], contact=contact,
        to_email=contact.email or "", template=template, sender=sender or template.sender,
        subscription_type=sub_type, is_marketing=bool(sub_type and sub_type.is_marketing),
        broadcast=broadcast, context=context or {}, next_attempt_at=send_after or now,
        created_at=now)
    try:
        with transaction.atomic():
            message.save()
    except IntegrityError:
        return OutboundMessage.objects.get(dedupe_key=key), False
    return message, True


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    held: int = 0
    suppressed: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    recovered: int = 0
    broadcasts: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_is_stale(token: str, claimed_at: datetime | None, now: datetime) -> bool:
    if claimed_at is None or claimed_at < now - claim_lease():
        return True
    host, _, rest = token.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid != os.getpid() and not _pid_alive(pid)


def outbox_recover_stale(*, now: datetime | None = None) -> int:
    """Release messages left in "sending" by a worker that is gone; returns how many.

    Not handed off: back to queued (the SMTP server never got the end of the message).
    Handed off: sent, marked "delivery not confirmed", never sent again (at-most-once).
    """
    now = now or timezone.now()
    claims = (OutboundMessage.objects.filter(status=Status.SENDING)
              .values_list("claim_token", "claimed_at").distinct())
    stale = {token for token, claimed_at in claims if _claim_is_stale(token, claimed_at, now)}
    count = 0
    for token in stale:
        with transaction.atomic():
            rows = OutboundMessage.objects.filter(status=Status.SENDING, claim_token=token)
            count += rows.filter(handed_off_at__isnull=True).update(
                status=Status.QUEUED, claim_token="", claimed_at=None, next_attempt_at=now)
            handed = list(rows.filter(handed_off_at__isnull=False)
                          .select_related("contact"))
            for message in handed:
                message.status = Status.SENT
                message.sent_at = message.handed_off_at
                message.last_error = ("Delivery not confirmed: the worker stopped after handing "
                                      "the message to the SMTP server; not resent.")
            OutboundMessage.objects.bulk_update(handed, ["status", "sent_at", "last_error"])
            _record_sent_events(handed, confirmed=False)
            count += len(handed)
            _broadcasts_finish({m.broadcast_id for m in handed if m.broadcast_id})
    return count


def _claim(batch_size: int, now: datetime) -> list[OutboundMessage]:
    for _ in range(5):
        ids = list(OutboundMessage.objects.filter(status__in=DUE_STATUSES, next_attempt_at__lte=now)
                   .order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return []
        token = f"{worker_id()}:{uuid.uuid4().hex[:12]}"
        claimed = OutboundMessage.objects.filter(
            pk__in=ids, status__in=DUE_STATUSES, next_attempt_at__lte=now,
        ).update(status=Status.SENDING, claim_token=token, claimed_at=now)
        if claimed:
            return list(OutboundMessage.objects.filter(claim_token=token, status=Status.SENDING)
                        .select_related("contact__company", "template", "sender",
                                        "subscription_type", "template__sender")
                        .order_by("pk"))
        # Another worker took these rows between our read and our update: read again.
    return []


def outbox_send_due(*, batch_size: int = 100, max_batches: int | None = None,
                    now: datetime | None = None) -> SendReport:
    """Send every due message, a batch (one SMTP connection) at a time; safe to run anywhere.

    Idempotent and concurrency-safe: messages are claimed before sending, so running it
    twice, or in two workers at once, sends each message at most once.
    """
    report = SendReport()
    report.recovered = outbox_recover_stale()
    batches = 0
    while max_batches is None or batches < max_batches:
        batch = _claim(batch_size, now or timezone.now())
        if not batch:
            break
        batches += 1
        report.claimed += len(batch)
        try:
            _process_batch(batch, report)
        except Exception:
            # Unexpected error: give back what was not handed off, keep the rest visible.
            OutboundMessage.objects.filter(
                claim_token=batch[0].claim_token, status=Status.SENDING,
                handed_off_at__isnull=True,
            ).update(status=Status.QUEUED, claim_token="", claimed_at=None)
            raise
    return report


# --- one batch --------------------------------------------------------------------------

class _HandoffLost(Exception):
    """Our claim on the row is gone (recovered as stale): do not finish this message."""


@dataclass
class _Outcome:
    message: OutboundMessage
    kind: str  # sent | unconfirmed | temp | perm | lost
    error: str = ""


def _tags_by_contact(contact_ids: set[int]) -> dict[int, list[str]]:
    through = Contact.tags.through
    tags: dict[int, list[str]] = defaultdict(list)
    for contact_id, name in through.objects.filter(contact_id__in=contact_ids).values_list(
            "contact_id", "tag__name"):
        tags[contact_id].append(name)
    return tags


def _gate(batch: list[OutboundMessage], now: datetime, report: SendReport) -> list[OutboundMessage]:
    """Apply address, suppression, consent, caps and quiet hours; return the sendable ones."""
    emails = {(m.contact.email or "").strip().lower() for m in batch}
    suppressed = set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
    purposes = {m.subscription_type.key for m in batch if m.subscription_type_id}
    consents = policy.consent_states({m.contact_id for m in batch}, purposes)
    sends = policy.recent_marketing_sends({m.contact_id for m in batch if m.is_marketing}, now)
    sendable: list[OutboundMessage] = []
    changed: list[OutboundMessage] = []
    for m in batch:
        email = (m.contact.email or "").strip()
        m.to_email = email
        type_key = m.subscription_type.key if m.subscription_type_id else None
        if not email:
            m.status, m.last_error = Status.SKIPPED, "The contact has no email address."
            report.skipped += 1
        elif email.lower() in suppressed:
            m.status, m.last_error = Status.SUPPRESSED, "The address is suppressed."
            report.suppressed += 1
        elif not policy.consent_allows(is_marketing=m.is_marketing, type_key=type_key,
                                       state=consents.get((m.contact_id, type_key or ""))):
            m.status = Status.SUPPRESSED
            m.last_error = f"No consent for '{type_key}' at send time."
            report.suppressed += 1
        elif m.is_marketing and (until := policy.hold_until(
                sent_times=sends[m.contact_id], tz_name=m.contact.timezone, now=now)):
            m.status, m.next_attempt_at = Status.HELD, until
            m.last_error = f"Held by frequency cap or quiet hours until {until:%Y-%m-%d %H:%M} UTC."
            report.held += 1
        else:
            if m.is_marketing:
                sends[m.contact_id].append(now)
            sendable.append(m)
            continue
        m.claim_token, m.claimed_at = "", None
        changed.append(m)
    if changed:
        OutboundMessage.objects.bulk_update(
            changed, ["status", "last_error", "next_attempt_at", "claim_token", "claimed_at",
                      "to_email"])
    return sendable


def _message_domain(from_email: str) -> str:
    match = re.search(r"@([^>\s]+)", from_email)
    return match.group(1) if match else "clm.localhost"


def build_email(m: OutboundMessage, tags: list[str]) -> EmailMultiAlternatives:
    """The email for one outbox row: rendered, tracked, with unsubscribe headers if opted-in."""
    unsub = prefs = ""
    extra: dict[str, Any] = dict(m.context or {})
    if m.subscription_type_id:
        unsub = tokens.unsubscribe_url(contact_id=m.contact_id, type_key=m.subscription_type.key,
                                       message_id=m.pk)
        prefs = tokens.preferences_url(contact_id=m.contact_id)
    extra.update(unsubscribe_url=unsub, preferences_url=prefs)
    ctx = contact_context(m.contact, extra=extra, tags=tags)
    rendered = render(subject=m.template.subject, html=m.template.html_body, context=ctx)
    html, text = rendered.html, rendered.text
    if unsub and unsub not in html:
        html += (f'<p style="font-size:12px;color:#666"><a href="{unsub}">Unsubscribe</a> · '
                 f'<a href="{prefs}">Email preferences</a></p>')
        text += f"\nUnsubscribe: {unsub}\nEmail preferences: {prefs}\n"
    html = add_tracking(html, open_url=tokens.open_url(message_id=m.pk), skip={unsub, prefs},
                        click_url=lambda url: tokens.click_url(message_id=m.pk, url=url))
    sender = m.sender or m.template.sender or default_sender()
    from_email = sender.from_header if sender else settings.DEFAULT_FROM_EMAIL
    message_id = f"<clm.{m.pk}.{uuid.uuid4().hex}@{_message_domain(from_email)}>"
    headers = {"Message-ID": message_id}
    if unsub:
        mailto = getattr(settings, "CLM_EMAIL_UNSUBSCRIBE_MAILTO", "") or \
            (sender.reply_to or sender.email if sender else "")
        headers["List-Unsubscribe"] = f"<{unsub}>" + (
            f", <mailto:{mailto}?subject=unsubscribe>" if mailto else "")
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email = EmailMultiAlternatives(
        subject=rendered.subject, body=text, from_email=from_email, to=[m.to_email],
        reply_to=[sender.reply_to] if sender and sender.reply_to else None, headers=headers)
    email.attach_alternative(html, "text/html")
    return email


def _smtp_code_kind(code: int) -> str:
    return "temp" if 400 <= code < 500 else "perm"


def _deliver_smtp(backend: SmtpBackend, email: EmailMultiAlternatives, on_handoff) -> tuple[str, str]:
    """One message over the open connection; the hand-off is committed before the final "."."""
    if backend.connection is None:
        backend.open()
    conn: smtplib.SMTP = backend.connection
    if conn.sock is not None:
        # The body and the final "." are two writes: without TCP_NODELAY, Nagle's algorithm
        # and the server's delayed ACK stall each message by ~40 ms.
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    encoding = email.encoding or settings.DEFAULT_CHARSET
    from_email = sanitize_address(email.from_email, encoding)
    recipients = [sanitize_address(a, encoding) for a in email.recipients()]
    payload = email.message().as_bytes(linesep="\r\n")
    handed = False

    def data(msg: bytes):
        nonlocal handed
        conn.putcmd("data")
        code, reply = conn.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        body = re.sub(rb"(?m)^\.", b"..", msg)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        conn.send(body)
        on_handoff()
        handed = True
        conn.send(b".\r\n")
        return conn.getreply()

    conn.data = data  # this connection only; smtplib's sendmail calls self.data()
    try:
        conn.sendmail(from_email, recipients, payload)
        return "sent", ""
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        return _smtp_code_kind(code), f"{code} {reply.decode(errors='replace')}"
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        if exc.smtp_code == -1:  # smtplib's code for "connection closed"
            return _connection_broken(backend, handed, reply)
        return _smtp_code_kind(exc.smtp_code), f"{exc.smtp_code} {reply}"
    except _HandoffLost:
        _drop_connection(backend)
        return "lost", ""
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        return _connection_broken(backend, handed, str(exc) or exc.__class__.__name__)
    except smtplib.SMTPException as exc:
        return "perm", str(exc)
    finally:
        with contextlib.suppress(AttributeError):
            del conn.data


def _drop_connection(backend: SmtpBackend) -> None:
    if backend.connection is not None:
        with contextlib.suppress(Exception):
            backend.connection.close()
    backend.connection = None


def _connection_broken(backend: SmtpBackend, handed: bool, error: str) -> tuple[str, str]:
    _drop_connection(backend)
    if handed:
        return "unconfirmed", f"Connection lost after hand-off ({error}); not resent."
    return "temp", f"Connection error: {error}"


def _deliver_other(backend, email: EmailMultiAlternatives, on_handoff) -> tuple[str, str]:
    """Non-SMTP backends (file, console, locmem): hand off, then send."""
    try:
        on_handoff()
    except _HandoffLost:
        return "lost", ""
    try:
        backend.send_messages([email])
    except Exception as exc:
        return "perm", f"{exc.__class__.__name__}: {exc}"
    return "sent", ""


def _process_batch(batch: list[OutboundMessage], report: SendReport) -> None:
    now = timezone.now()
    token = batch[0].claim_token
    sendable = _gate(batch, now, report)
    outcomes: list[_Outcome] = []
    if sendable:
        tags = _tags_by_contact({m.contact_id for m in sendable})
        backend = get_connection(fail_silently=False)
        is_smtp = isinstance(backend, SmtpBackend)
        try:
            backend.open()
        except OSError as exc:
            outcomes = [_Outcome(m, "temp", f"Cannot connect to the SMTP server: {exc}")
                        for m in sendable]
            sendable = []
        try:
            for m in sendable:
                outcomes.append(_send_one(backend, is_smtp, m, token, tags.get(m.contact_id, [])))
        finally:
            with contextlib.suppress(Exception):
                backend.close()
    _finish(outcomes, report)
    report.broadcasts.update(m.broadcast_id for m in batch if m.broadcast_id)
    _broadcasts_finish({m.broadcast_id for m in batch if m.broadcast_id})


def _send_one(backend, is_smtp: bool, m: OutboundMessage, token: str, tags: list[str]) -> _Outcome:
    try:
        email = build_email(m, tags)
    except RenderError as exc:
        return _Outcome(m, "perm", exc.message)
    m.subject = email.subject[:300]
    m.provider_message_id = email.extra_headers["Message-ID"]

    def on_handoff() -> None:
        at = timezone.now()
        # Plain SQL: this runs once per email on the hot path (autocommit: durable at once).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {OutboundMessage._meta.db_table} SET handed_off_at = %s, "  # noqa: S608
                "provider_message_id = %s, to_email = %s, subject = %s "
                "WHERE id = %s AND claim_token = %s AND status = %s AND handed_off_at IS NULL",
                [connection.ops.adapt_datetimefield_value(at), m.provider_message_id,
                 m.to_email, m.subject, m.pk, token, Status.SENDING.value])
            updated = cursor.rowcount
        if updated != 1:
            raise _HandoffLost
        m.handed_off_at = at

    deliver = _deliver_smtp if is_smtp else _deliver_other
    kind, error = deliver(backend, email, on_handoff)
    return _Outcome(m, kind, error)


def _finish(outcomes: list[_Outcome], report: SendReport) -> None:
    """Record the batch's results in one transaction (statuses and timeline events).

    Sent rows (the common case) take one UPDATE; subject, Message-ID and address were
    written at the hand-off.
    """
    now = timezone.now()
    sent: list[OutboundMessage] = []
    unconfirmed: list[OutboundMessage] = []
    others: list[OutboundMessage] = []
    for o in outcomes:
        m = o.message
        if o.kind == "lost":
            continue
        m.claim_token, m.claimed_at = "", None
        if o.kind in ("sent", "unconfirmed"):
            m.status, m.sent_at, m.last_error = Status.SENT, m.handed_off_at or now, o.error
            (sent if o.kind == "sent" else unconfirmed).append(m)
            report.sent += 1
            continue
        m.attempts += 1
        if o.kind == "temp" and m.attempts < max_attempts():
            m.status, m.last_error = Status.QUEUED, o.error[:2000]
            m.next_attempt_at = now + retry_delay(m.attempts)
            report.retried += 1
        else:
            m.status = Status.FAILED
            m.last_error = (o.error if o.kind == "perm"
                            else f"Gave up after {m.attempts} attempts: {o.error}")[:2000]
            report.failed += 1
        others.append(m)
    with transaction.atomic():
        if sent:
            OutboundMessage.objects.filter(pk__in=[m.pk for m in sent]).update(
                status=Status.SENT, sent_at=F("handed_off_at"), last_error="", claim_token="",
                claimed_at=None)
        for m in unconfirmed + others:
            OutboundMessage.objects.filter(pk=m.pk).update(
                status=m.status, sent_at=m.sent_at, last_error=m.last_error,
                attempts=m.attempts, next_attempt_at=m.next_attempt_at, subject=m.subject,
                claim_token="", claimed_at=None, to_email=m.to_email)
        _record_sent_events(sent, confirmed=True)
        _record_sent_events(unconfirmed, confirmed=False)


def _record_sent_events(messages: list[OutboundMessage], *, confirmed: bool) -> None:
    """email.sent (and email.delivered when the SMTP server accepted it) per message."""
    if not messages:
        return
    events: list[Event] = []
    kinds = ["email.sent", "email.delivered"] if confirmed else ["email.sent"]
    for m in messages:
        props = {"message_id": m.pk, "subject": m.subject, "purpose": m.purpose,
                 "broadcast_id": m.broadcast_id, "template_id": m.template_id,
                 "to": m.to_email}
        if not confirmed:
            props["unconfirmed"] = True
        events.extend(Event(contact_id=m.contact_id, kind=kind, occurred_at=m.sent_at,
                            source="email", properties=props,
                            idempotency_key=f"{kind}:{m.pk}") for kind in kinds)
    events_record_bulk(events)


def _broadcasts_finish(broadcast_ids: set[int]) -> None:
    """Mark sending broadcasts done once none of their messages is queued, held or sending."""
    for broadcast_id in broadcast_ids:
        pending = OutboundMessage.objects.filter(
            broadcast_id=broadcast_id, status__in=[*DUE_STATUSES, Status.SENDING]).exists()
        if not pending:
            Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.Status.SENDING).update(
                status=Broadcast.Status.DONE, finished_at=timezone.now())
