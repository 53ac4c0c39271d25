"""The spine: every touchpoint and change of a customer, with its time."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Event(models.Model):
    # No index of its own: event_contact_time leads with the contact, and every event written
    # (ingest, a rebuild's stage.changed rows) paid for a sixth index for nothing.
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="events", db_index=False)
    kind = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    source = models.CharField(max_length=30, help_text="ui, api, ingest, import, system, …")
    properties = models.JSONField(default=dict, blank=True)
    # Client-supplied for ingested events: a retried batch finds its rows here.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["contact", "-occurred_at"], name="event_contact_time"),
            models.Index(fields=["contact", "kind", "-occurred_at"], name="event_contact_kind_time"),
            models.Index(fields=["kind", "occurred_at"], name="event_kind_time"),
            # The unfiltered event list of the API pages by (-occurred_at, -id).
            models.Index(fields=["-occurred_at", "-id"], name="event_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"
