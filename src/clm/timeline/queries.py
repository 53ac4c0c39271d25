"""Reads of the timeline."""

from __future__ import annotations

from django.db.models import QuerySet

from clm.timeline.models import Event


def contact_timeline(contact, *, kinds: list[str] | None = None) -> QuerySet[Event]:
    """A contact's events, newest first, optionally limited to some kinds."""
    qs = Event.objects.filter(contact=contact).select_related("actor")
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return qs.order_by("-occurred_at", "-pk")


def contact_event_kinds(contact) -> list[str]:
    return sorted(set(Event.objects.filter(contact=contact).values_list("kind", flat=True)))
