"""Reads of the engagement app: audiences, broadcast stats, outbox lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from clm.core.errors import ValidationFailed
from clm.customers.models import Contact
from clm.customers.queries import contacts_visible
from clm.engagement.models import Broadcast, OutboundMessage

AUDIENCE_KEYS = {"all", "tag", "stage", "segment"}


def audience_check(audience: dict[str, Any]) -> dict[str, Any]:
    """A cleaned audience: {"all": true}, or any of {"segment": id, "tag": …, "stage": …}
    (AND-ed)."""
    if not isinstance(audience, dict):
        raise ValidationFailed("The audience must be an object.", field="audience")
    unknown = set(audience) - AUDIENCE_KEYS
    if unknown:
        raise ValidationFailed(f"Unknown audience filter '{sorted(unknown)[0]}'.", field="audience")
    clean: dict[str, Any] = {}
    if audience.get("segment") not in (None, ""):
        from clm.core.types import parse_id
        from clm.segments.models import Segment

        segment_id = parse_id(audience["segment"])
        if segment_id is None or not Segment.objects.filter(pk=segment_id).exists():
            raise ValidationFailed("There is no such segment.", field="audience.segment")
        clean["segment"] = segment_id
    tag = str(audience.get("tag") or "").strip().lower()
    stage = str(audience.get("stage") or "").strip().lower()
    if tag:
        clean["tag"] = tag[:64]
    if stage:
        clean["stage"] = stage[:32]
    if not clean:
        if not audience.get("all"):
            raise ValidationFailed("Choose a tag or stage, or everyone with an email.",
                                   field="audience")
        clean["all"] = True
    return clean


def audience_contacts(audience: dict[str, Any], user=None) -> QuerySet[Contact]:
    """Contacts in the audience (those the broadcast's creator may see, if one is known)."""
    qs = contacts_visible(user) if user is not None else Contact.objects.all()
    if audience.get("segment"):
        from clm.segments.models import Segment
        from clm.segments.queries import segment_q

        segment = Segment.objects.filter(pk=audience["segment"]).first()
        if segment is None:  # deleted since: nobody, rather than everybody
            return Contact.objects.none()
        qs = qs.filter(segment_q(segment))
    if audience.get("tag"):
        qs = qs.filter(tags__name=audience["tag"])
    if audience.get("stage"):
        qs = qs.filter(stage=audience["stage"])
    return qs.filter(email__isnull=False).distinct()


def audience_describe(audience: dict[str, Any]) -> str:
    parts = []
    if audience.get("segment"):
        from clm.segments.models import Segment

        name = Segment.objects.filter(pk=audience["segment"]).values_list("name", flat=True).first()
        parts.append(f"segment “{name or 'deleted'}”")
    if audience.get("tag"):
        parts.append(f"tag “{audience['tag']}”")
    if audience.get("stage"):
        parts.append(f"stage “{audience['stage']}”")
    return " and ".join(parts) if parts else "everyone with an email"


@dataclass
class BroadcastStats:
    total: int
    queued: int
    held: int
    sending: int
    sent: int
    failed: int
    suppressed: int
    skipped: int
    opened: int
    clicked: int
    unsubscribed: int
    bounced: int

    @property
    def processed(self) -> int:
        return self.total - self.queued - self.held - self.sending

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.processed / self.total)

    def as_dict(self) -> dict[str, int]:
        return {**self.__dict__, "processed": self.processed, "percent": self.percent}


def broadcast_stats(broadcast: Broadcast) -> BroadcastStats:
    """Counts per status and engagement for one broadcast (one query)."""
    s = OutboundMessage.Status
    agg = OutboundMessage.objects.filter(broadcast=broadcast).aggregate(
        total=Count("pk"),
        **{status: Count("pk", filter=Q(status=status))
           for status in (s.QUEUED, s.HELD, s.SENDING, s.SENT, s.FAILED, s.SUPPRESSED, s.SKIPPED)},
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
        unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
        bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
    )
    return BroadcastStats(**{k: int(v or 0) for k, v in agg.items()})


def outbox_messages(*, status: str | None = None, broadcast_id: int | None = None
                    ) -> QuerySet[OutboundMessage]:
    qs = OutboundMessage.objects.select_related("contact", "template", "broadcast")
    if status:
        qs = qs.filter(status=status)
    if broadcast_id:
        qs = qs.filter(broadcast_id=broadcast_id)
    return qs.order_by("-pk")


def outbox_counts(qs: QuerySet[OutboundMessage] | None = None) -> dict[str, int]:
    """Messages per status (of `qs`, default all)."""
    qs = OutboundMessage.objects.all() if qs is None else qs
    rows = qs.values_list("status").annotate(n=Count("pk")).order_by()
    return dict(rows)
