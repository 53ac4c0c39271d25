"""Email: sender identities, subscription types, templates, the outbox, suppressions, broadcasts.

The outbox (`OutboundMessage`) is the single path by which CLM sends email: one row per
message, unique on `dedupe_key` (purpose, contact, step), so enqueuing twice is harmless and a
workflow step can send through it with its own key.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class SenderIdentity(models.Model):
    """Who an email is from: display name, address and an optional reply-to."""

    name = models.CharField(max_length=100)
    email = models.EmailField(max_length=254)
    reply_to = models.EmailField(max_length=254, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "sender identities"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["email", "name"],
                                               name="sender_identity_unique")]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def from_header(self) -> str:
        from email.utils import formataddr

        return formataddr((self.name, self.email))


class SubscriptionType(models.Model):
    """A kind of email a contact can opt in to or out of; its key is the consent purpose.

    Marketing types need an explicit, current opt-in (latest consent granted). Non-marketing
    types (service notices) go out unless the contact opted out. Transactional email has no
    subscription type and ignores marketing opt-outs.
    """

    key = models.SlugField(max_length=50, unique=True)
    label = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    is_marketing = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class EmailTemplate(models.Model):
    """Subject and sanitised HTML with merge fields; the plain-text part is generated."""

    name = models.CharField(max_length=150, unique=True)
    subject = models.CharField(max_length=300)
    html_body = models.TextField()
    text_body = models.TextField(blank=True, help_text="Generated from the HTML.")
    sender = models.ForeignKey(SenderIdentity, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    subscription_type = models.ForeignKey(SubscriptionType, null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="+",
                                          help_text="Empty: transactional.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Broadcast(models.Model):
    """One email to an audience, now or at a scheduled time.

    `audience` is JSON so new kinds can be added without a migration: {"all": true},
    {"tag": "vip", "stage": "customer"}; later {"segment": <id>}.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=150)
    template = models.ForeignKey(EmailTemplate, on_delete=models.PROTECT, related_name="broadcasts")
    sender = models.ForeignKey(SenderIdentity, on_delete=models.PROTECT, related_name="+")
    subscription_type = models.ForeignKey(SubscriptionType, on_delete=models.PROTECT,
                                          related_name="+")
    audience = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT,
                              db_index=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Messages queued by the expansion.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "scheduled_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def purpose(self) -> str:
        return f"broadcast:{self.pk}"


class OutboundMessage(models.Model):
    """One email in the outbox.

    Life: queued → sending (claimed by one worker) → sent | failed | queued (retry later);
    held (frequency cap or quiet hours; goes out at next_attempt_at); suppressed (address
    suppressed or no consent); skipped (nothing to send to, e.g. the contact has no email).
    `handed_off_at` is written just before the SMTP server is given the end of the message:
    a row with it set is never sent again (at-most-once).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        HELD = "held", "Held"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed"
        SKIPPED = "skipped", "Skipped"

    dedupe_key = models.CharField(max_length=200, unique=True)
    purpose = models.CharField(max_length=100, help_text="broadcast:<id>, workflow:<id>, …")
    step = models.CharField(max_length=100, blank=True)
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="outbound_messages")
    to_email = models.CharField(max_length=254, blank=True)
    template = models.ForeignKey(EmailTemplate, on_delete=models.PROTECT, related_name="+")
    sender = models.ForeignKey(SenderIdentity, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    subscription_type = models.ForeignKey(SubscriptionType, null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+")
    is_marketing = models.BooleanField(default=False)
    broadcast = models.ForeignKey(Broadcast, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="messages")
    context = models.JSONField(default=dict, blank=True, help_text="Extra merge fields.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    claim_token = models.CharField(max_length=100, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    handed_off_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True, db_index=True,
                                           help_text="The Message-ID header we set.")
    subject = models.CharField(max_length=300, blank=True, help_text="As rendered when sent.")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due"),
            models.Index(fields=["contact", "is_marketing", "sent_at"], name="outbox_caps"),
            models.Index(fields=["broadcast", "status"], name="outbox_broadcast_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "held", "sending", "sent", "failed",
                                        "suppressed", "skipped"]),
                name="outbound_message_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.dedupe_key} ({self.status})"


class Suppression(models.Model):
    """An address no email goes to (hard bounce, complaint, or set by hand)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Complaint"
        MANUAL = "manual", "Manual"

    email = models.CharField(max_length=254, unique=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    message = models.ForeignKey(OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"
