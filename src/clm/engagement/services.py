"""Every write of the engagement app (email half): templates, senders, subscription types,
broadcasts, unsubscribes and preferences, tracking and bounces.

Sending itself lives in `outbox.py` (queue, claim, send at most once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from clm.core.errors import Conflict, ValidationFailed
from clm.customers.models import Contact, ObjectType, PropertyDefinition
from clm.customers.services import consent_record
from clm.engagement.models import (
    Broadcast,
    EmailTemplate,
    OutboundMessage,
    SenderIdentity,
    SubscriptionType,
    Suppression,
)
from clm.engagement.queries import audience_check, audience_contacts
from clm.engagement.rendering import html_to_text, sanitize_html, template_check
from clm.timeline.services import event_record

Status = OutboundMessage.Status


def _text(value: Any, field: str, label: str, max_len: int, *, required: bool = True) -> str:
    text = str(value or "").strip()
    if required and not text:
        raise ValidationFailed(f"{label} is required.", field=field, code="required")
    if len(text) > max_len:
        raise ValidationFailed(f"{label} is at most {max_len} characters.", field=field,
                               code="too_long")
    return text


def _email(value: Any, field: str, *, required: bool = True) -> str:
    text = str(value or "").strip().lower()
    if not text and not required:
        return ""
    try:
        validate_email(text)
    except DjangoValidationError:
        raise ValidationFailed("Enter a valid email address.", field=field,
                               code="invalid_email") from None
    return text


# --- sender identities -------------------------------------------------------------------

@transaction.atomic
def sender_save(*, data: dict[str, Any], sender: SenderIdentity | None = None) -> SenderIdentity:
    """Create or update a sender identity; at most one is the default."""
    sender = sender or SenderIdentity()
    sender.name = _text(data.get("name"), "name", "Name", 100)
    sender.email = _email(data.get("email"), "email")
    sender.reply_to = _email(data.get("reply_to"), "reply_to", required=False)
    sender.is_default = bool(data.get("is_default"))
    if SenderIdentity.objects.filter(name=sender.name, email=sender.email).exclude(
            pk=sender.pk).exists():
        raise Conflict("This sender identity exists already.", field="email", code="duplicate")
    sender.save()
    if sender.is_default:
        SenderIdentity.objects.exclude(pk=sender.pk).update(is_default=False)
    return sender


# --- subscription types ------------------------------------------------------------------

@transaction.atomic
def subscription_type_save(*, data: dict[str, Any],
                           sub_type: SubscriptionType | None = None) -> SubscriptionType:
    """Create or update a subscription type. Its key (the consent purpose) never changes."""
    creating = sub_type is None
    sub_type = sub_type or SubscriptionType()
    if creating:
        key = slugify(str(data.get("key") or "")).replace("-", "_")
        if not key:
            raise ValidationFailed("A key is required (letters, digits, _).", field="key",
                                   code="required")
        if len(key) > 50:
            raise ValidationFailed("The key is at most 50 characters.", field="key")
        if SubscriptionType.objects.filter(key=key).exists():
            raise Conflict("A subscription type with this key exists.", field="key",
                           code="duplicate")
        sub_type.key = key
    sub_type.label = _text(data.get("label"), "label", "Label", 100)
    sub_type.description = _text(data.get("description"), "description", "Description", 300,
                                 required=False)
    sub_type.is_marketing = bool(data.get("is_marketing", True))
    sub_type.save()
    return sub_type


# --- templates ---------------------------------------------------------------------------

def _property_keys() -> list[str]:
    return list(PropertyDefinition.objects.filter(object_type=ObjectType.CONTACT)
                .values_list("key", flat=True))


@transaction.atomic
def template_save(*, data: dict[str, Any], template: EmailTemplate | None = None,
                  actor=None) -> EmailTemplate:
    """Create or update a template: sanitise the HTML, check it renders, generate the text.

    Refuses (ValidationFailed naming `subject` or `html_body`) a template that does not
    render or uses an unknown merge field.
    """
    template = template or EmailTemplate(created_by=actor if actor and actor.is_authenticated
                                         else None)
    fields = {"name", "subject", "html_body", "sender", "subscription_type"}
    if template.pk:
        data = {**{f: getattr(template, f) for f in fields}, **data}
    name = _text(data.get("name"), "name", "Name", 150)
    subject = _text(data.get("subject"), "subject", "Subject", 300)
    html = sanitize_html(_text(data.get("html_body"), "html_body", "HTML body", 200_000))
    template_check(subject=subject, html=html, property_keys=_property_keys())
    if EmailTemplate.objects.filter(name=name).exclude(pk=template.pk).exists():
        raise Conflict("A template with this name exists.", field="name", code="duplicate")
    template.name, template.subject, template.html_body = name, subject, html
    template.text_body = html_to_text(html)
    template.sender = _resolve(SenderIdentity, data.get("sender"), "sender")
    template.subscription_type = _resolve(SubscriptionType, data.get("subscription_type"),
                                          "subscription_type")
    template.save()
    return template


def _resolve(model, value, field: str):
    if value in (None, ""):
        return None
    if isinstance(value, model):
        return value
    obj = model.objects.filter(pk=value).first() if str(value).isdigit() else None
    if obj is None:
        raise ValidationFailed(f"Unknown {field.replace('_', ' ')}.", field=field,
                               code="not_found")
    return obj


@transaction.atomic
def template_delete(*, template: EmailTemplate) -> None:
    """Delete a template no message or broadcast uses (else Conflict)."""
    if template.broadcasts.exists() or OutboundMessage.objects.filter(template=template).exists():
        raise Conflict("This template has been used; it cannot be deleted.", code="in_use")
    template.delete()


# --- broadcasts --------------------------------------------------------------------------

@transaction.atomic
def broadcast_create(*, data: dict[str, Any], actor=None) -> Broadcast:
    """A draft broadcast: template, sender, subscription type, audience, optional schedule."""
    template = _resolve(EmailTemplate, data.get("template"), "template")
    sender = _resolve(SenderIdentity, data.get("sender"), "sender") or (template and template.sender)
    sub_type = _resolve(SubscriptionType, data.get("subscription_type"), "subscription_type") \
        or (template.subscription_type if template else None)
    if template is None:
        raise ValidationFailed("Choose a template.", field="template", code="required")
    if sender is None:
        raise ValidationFailed("Choose a sender identity.", field="sender", code="required")
    if sub_type is None:
        raise ValidationFailed("A broadcast needs a subscription type (consent purpose).",
                               field="subscription_type", code="required")
    scheduled_at = data.get("scheduled_at")
    if scheduled_at is not None and not isinstance(scheduled_at, datetime):
        raise ValidationFailed("Enter a date and time.", field="scheduled_at")
    if scheduled_at is not None and timezone.is_naive(scheduled_at):
        scheduled_at = timezone.make_aware(scheduled_at)
    return Broadcast.objects.create(
        name=_text(data.get("name"), "name", "Name", 150), template=template, sender=sender,
        subscription_type=sub_type, audience=audience_check(data.get("audience") or {}),
        scheduled_at=scheduled_at,
        created_by=actor if actor is not None and actor.is_authenticated else None)


@transaction.atomic
def broadcast_start(*, broadcast: Broadcast, actor=None, now: datetime | None = None) -> Broadcast:
    """Start now (expand the audience into the outbox) or, if scheduled later, schedule it.

    Sending happens in the task worker after commit (tasks.outbox_send_due).
    """
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
    if broadcast.status not in (Broadcast.Status.DRAFT, Broadcast.Status.SCHEDULED):
        raise Conflict(f"This broadcast is {broadcast.get_status_display().lower()}.",
                       code="invalid_state")
    now = now or timezone.now()
    if broadcast.scheduled_at and broadcast.scheduled_at > now:
        broadcast.status = Broadcast.Status.SCHEDULED
        broadcast.save(update_fields=["status"])
        return broadcast
    broadcast_expand(broadcast=broadcast)
    transaction.on_commit(_enqueue_send)
    return broadcast


def _enqueue_send() -> None:
    from clm.engagement.tasks import outbox_send_due

    outbox_send_due.enqueue()


@transaction.atomic
def broadcast_expand(*, broadcast: Broadcast) -> int:
    """Queue one outbox row per audience contact with an email; returns rows now queued.

    Idempotent: rows are keyed on (broadcast, contact), so a re-run adds only contacts that
    joined the audience since.
    """
    now = timezone.now()
    contacts = audience_contacts(broadcast.audience, broadcast.created_by)
    ids = contacts.filter(email__isnull=False).values_list("pk", "email")
    purpose = broadcast.purpose
    is_marketing = broadcast.subscription_type.is_marketing
    rows: list[OutboundMessage] = []

    def flush() -> None:
        OutboundMessage.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        rows.clear()

    from clm.engagement.outbox import dedupe_key_for

    for contact_id, email in ids.iterator(chunk_size=2000):
        rows.append(OutboundMessage(
            dedupe_key=dedupe_key_for(purpose, contact_id), purpose=purpose,
            contact_id=contact_id, to_email=email, template_id=broadcast.template_id,
            sender_id=broadcast.sender_id, subscription_type_id=broadcast.subscription_type_id,
            is_marketing=is_marketing, broadcast=broadcast, next_attempt_at=now, created_at=now))
        if len(rows) >= 2000:
            flush()
    flush()
    total = OutboundMessage.objects.filter(broadcast=broadcast).count()
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=Broadcast.Status.SENDING, started_at=broadcast.started_at or now, total=total)
    broadcast.refresh_from_db()
    return total


@transaction.atomic
def broadcast_cancel(*, broadcast: Broadcast) -> Broadcast:
    """Stop a broadcast: queued and held messages are skipped; sent ones stay sent."""
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
    if broadcast.status in (Broadcast.Status.DONE, Broadcast.Status.CANCELLED):
        raise Conflict(f"This broadcast is {broadcast.get_status_display().lower()}.",
                       code="invalid_state")
    OutboundMessage.objects.filter(broadcast=broadcast, status__in=[Status.QUEUED, Status.HELD]
                                   ).update(status=Status.SKIPPED, last_error="Broadcast cancelled.")
    broadcast.status = Broadcast.Status.CANCELLED
    broadcast.finished_at = timezone.now()
    broadcast.save(update_fields=["status", "finished_at"])
    return broadcast


def broadcasts_start_due(*, now: datetime | None = None) -> list[int]:
    """Start scheduled broadcasts whose time has come; returns their ids (idempotent)."""
    now = now or timezone.now()
    started = []
    for broadcast in Broadcast.objects.filter(status=Broadcast.Status.SCHEDULED,
                                              scheduled_at__lte=now):
        broadcast_start(broadcast=broadcast, now=now)
        started.append(broadcast.pk)
    return started


# --- unsubscribe, preferences ------------------------------------------------------------

@transaction.atomic
def unsubscribe(*, contact: Contact, type_key: str, message: OutboundMessage | None = None,
                source: str = "unsubscribe_link") -> bool:
    """Opt the contact out of one subscription type; idempotent.

    Returns False (and writes nothing) when the contact is opted out already.
    """
    latest = contact.consents.filter(purpose=type_key).order_by("-occurred_at", "-pk").first()
    if latest is not None and not latest.granted:
        return False
    consent_record(contact=contact, purpose=type_key, granted=False, source=source)
    props: dict[str, Any] = {"subscription_type": type_key}
    if message is not None:
        props["message_id"] = message.pk
        if message.unsubscribed_at is None:
            OutboundMessage.objects.filter(pk=message.pk).update(unsubscribed_at=timezone.now())
    event_record(contact=contact, kind="email.unsubscribed", source="email", properties=props)
    return True


def subscription_state(contact: Contact) -> dict[str, bool]:
    """Whether the contact currently receives each subscription type, by key."""
    from clm.engagement.policy import consent_allows, consent_states

    types = list(SubscriptionType.objects.all())
    states = consent_states({contact.pk}, {t.key for t in types})
    return {t.key: consent_allows(is_marketing=t.is_marketing, type_key=t.key,
                                  state=states.get((contact.pk, t.key))) for t in types}


@transaction.atomic
def preferences_update(*, contact: Contact, wanted: dict[str, bool],
                       source: str = "preference_page") -> list[str]:
    """Record an opt-in or opt-out for each type whose wanted state differs; returns keys changed."""
    current = subscription_state(contact)
    changed = []
    for key, want in wanted.items():
        if key in current and current[key] != bool(want):
            consent_record(contact=contact, purpose=key, granted=bool(want), source=source)
            if not want:
                event_record(contact=contact, kind="email.unsubscribed", source="email",
                             properties={"subscription_type": key, "via": source})
            changed.append(key)
    return changed


# --- tracking and bounces ----------------------------------------------------------------

@transaction.atomic
def email_open_record(*, message: OutboundMessage) -> bool:
    """First open of a message: sets opened_at and records email.opened; later opens no-op."""
    now = timezone.now()
    if not OutboundMessage.objects.filter(pk=message.pk, opened_at__isnull=True).update(
            opened_at=now):
        return False
    event_record(contact=message.contact, kind="email.opened", occurred_at=now, source="email",
                 properties={"message_id": message.pk, "broadcast_id": message.broadcast_id},
                 idempotency_key=f"email.opened:{message.pk}")
    return True


@transaction.atomic
def email_click_record(*, message: OutboundMessage, url: str) -> bool:
    """A click: records email.clicked once per (message, link); a click implies an open."""
    import hashlib

    now = timezone.now()
    OutboundMessage.objects.filter(pk=message.pk, clicked_at__isnull=True).update(clicked_at=now)
    if message.opened_at is None:
        email_open_record(message=message)
    key = f"email.clicked:{message.pk}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"
    from clm.timeline.models import Event

    if Event.objects.filter(idempotency_key=key).exists():
        return False
    event_record(contact=message.contact, kind="email.clicked", occurred_at=now, source="email",
                 properties={"message_id": message.pk, "url": url[:2000],
                             "broadcast_id": message.broadcast_id}, idempotency_key=key)
    return True


@transaction.atomic
def email_bounce_record(*, message: OutboundMessage | None = None, address: str | None = None,
                        hard: bool, reason: str = "", source: str = "webhook") -> Suppression | None:
    """A bounce of a message or address: email.bounced on the contact's timeline; a hard
    bounce suppresses the address so no further email goes to it. Idempotent.

    Returns the suppression for a hard bounce, else None.
    """
    if message is None and not address:
        raise ValidationFailed("Give the message or the address that bounced.", field="email",
                               code="required")
    if address and address.strip():
        address = _email(address, "email")  # never suppress something that is no address
    email = (address or (message.to_email if message else "") or "").strip().lower()
    if not email:
        raise ValidationFailed("The message has no address.", field="email")
    now = timezone.now()
    if message is not None:
        OutboundMessage.objects.filter(pk=message.pk, bounced_at__isnull=True).update(bounced_at=now)
    contacts = [message.contact] if message is not None else \
        list(Contact.objects.filter(email=email))
    for contact in contacts:
        key = f"email.bounced:{message.pk if message else email}:{'hard' if hard else 'soft'}"
        from clm.timeline.models import Event

        if not Event.objects.filter(idempotency_key=key[:200]).exists():
            event_record(contact=contact, kind="email.bounced", occurred_at=now, source=source[:30],
                         properties={"email": email, "hard": hard, "reason": reason[:500],
                                     "message_id": message.pk if message else None},
                         idempotency_key=key[:200])
    if not hard:
        return None
    suppression, _ = Suppression.objects.get_or_create(
        email=email, defaults={"reason": Suppression.Reason.HARD_BOUNCE, "detail": reason[:500],
                               "message": message})
    return suppression


@transaction.atomic
def suppression_remove(*, email: str) -> int:
    """Allow email to an address again (e.g. after the mailbox was fixed)."""
    return Suppression.objects.filter(email=(email or "").strip().lower()).delete()[0]
