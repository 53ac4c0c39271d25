"""Events API: /api/v1/events (list, get, record one) and the idempotent bulk ingest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from clm.accounts.queries import visible
from clm.core.errors import DomainError, ValidationFailed
from clm.customers.api import _get, require
from clm.customers.queries import contacts_visible
from clm.customers.schemas import (
    MAX_ID,
    BatchSchema,
    ErrorOut,
    Id,
    InSchema,
    ListOut,
    PlainOut,
    paginate,
)
from clm.timeline.ingest import KIND_PATTERN, IngestEventIn, event_record_external, events_ingest
from clm.timeline.models import Event

events_router = Router(tags=["events"])

ROUTES = [("/v1/events", events_router)]


class EventOut(Schema):
    id: int
    contact_id: int
    kind: str
    occurred_at: datetime
    recorded_at: datetime
    source: str
    properties: dict[str, Any]
    idempotency_key: str | None
    actor_id: int | None


class EventListOut(ListOut):
    items: list[EventOut]


class EventIn(InSchema):
    contact_id: Id
    kind: str = Field(min_length=1, max_length=64, pattern=KIND_PATTERN)
    occurred_at: datetime | None = Field(None, description="Default: now")
    source: str = Field("api", min_length=1, max_length=30)
    properties: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class EventBatchIn(BatchSchema):
    events: list[Any] = Field(
        description="Up to CLM_INGEST_MAX_BATCH (1000) events.",
        json_schema_extra={"items": IngestEventIn.model_json_schema()})


class IngestResultOut(PlainOut):
    index: int
    idempotency_key: str | None
    status: str = Field(description="created, duplicate or rejected")
    event_id: int | None = None
    error: ErrorOut | None = None


class EventBatchOut(PlainOut):
    results: list[IngestResultOut]
    created: int
    duplicate: int
    rejected: int


def _events_visible(user):
    # Visibility of an event is the visibility of its contact.
    return visible(Event.objects.all(), user, owner_field="contact__owner")


@events_router.get("", response=EventListOut, summary="List events, newest first")
def event_list(request: HttpRequest, contact_id: int | None = None, kind: str | None = None,
               occurred_after: datetime | None = None, occurred_before: datetime | None = None,
               limit: int | None = None, cursor: str | None = None):
    """Events of the contacts the user may see; `kind` takes one kind or a comma list."""
    require(request, "timeline.view_event")
    qs = _events_visible(request.user)
    if contact_id is not None:
        if not 0 < contact_id <= MAX_ID:
            raise ValidationFailed("contact_id is not a contact id.", field="contact_id")
        qs = qs.filter(contact_id=contact_id)
    if kind:
        kinds = [k.strip() for k in kind.split(",") if k.strip()]
        if len(kinds) > 50 or any(len(k) > 64 or "\x00" in k for k in kinds):
            raise ValidationFailed("kind takes at most 50 kinds of 64 characters.", field="kind")
        qs = qs.filter(kind__in=kinds)
    if occurred_after is not None:
        qs = qs.filter(occurred_at__gte=occurred_after)
    if occurred_before is not None:
        qs = qs.filter(occurred_at__lt=occurred_before)
    items, next_cursor = paginate(qs, sort=None, allowed={"occurred_at"}, default="-occurred_at",
                                  cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}


@events_router.get("/{int:event_id}", response=EventOut, summary="Get an event")
def event_get(request: HttpRequest, event_id: int):
    require(request, "timeline.view_event")
    return _get(_events_visible(request.user), event_id)


@events_router.post("", response={200: EventOut, 201: EventOut}, summary="Record one event")
def event_create(request: HttpRequest, payload: EventIn):
    """Record one event on a contact the user may see: 201 when written; with an
    idempotency_key already used for this contact, 200 with the stored event."""
    require(request, "timeline.add_event")
    contact = contacts_visible(request.user).filter(pk=payload.contact_id).first()
    if contact is None:
        raise DomainError(f"There is no contact {payload.contact_id}.", code="not_found",
                          field="contact_id", status=404)
    event, created = event_record_external(
        contact=contact, kind=payload.kind, occurred_at=payload.occurred_at,
        properties=payload.properties, source=payload.source, actor=request.user,
        idempotency_key=payload.idempotency_key)
    return Status(201 if created else 200, event)


@events_router.post("/batch", response=EventBatchOut, summary="Ingest events in bulk")
def event_batch(request: HttpRequest, payload: EventBatchIn):
    """Record up to CLM_INGEST_MAX_BATCH (1000) outside events idempotently.

    Each event names its contact by `email` or `external_id` (an unknown one is created).
    The answer lists every event in order: `created` (event_id), `duplicate` (its
    idempotency_key was seen before: nothing written, event_id of the stored one) or
    `rejected` (error {code, field, message}). Good events are kept whatever the bad ones do.
    """
    require(request, "timeline.add_event", "customers.add_contact")
    maximum = settings.CLM_INGEST_MAX_BATCH
    if len(payload.events) > maximum:
        raise ValidationFailed(f"A batch holds at most {maximum} events.", field="events",
                               code="too_many")
    results = [r.as_dict() for r in events_ingest(items=payload.events, actor=request.user)]
    counts = {"created": 0, "duplicate": 0, "rejected": 0}
    for r in results:
        counts[r["status"]] += 1
    return {"results": results, **counts}
