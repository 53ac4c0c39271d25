"""Engagement API under /api/v1/engagement: templates CRUD, broadcasts (create, get, start,
stats) and the bounce webhook of an email provider.

Every endpoint checks the model permission (403, nothing changed), then calls a service or
a query. Auth is the API's (Bearer token or session).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from clm.accounts.queries import visible
from clm.core.errors import NotFound, PermissionDenied
from clm.core.types import Id
from clm.customers.schemas import InSchema  # unknown fields and NUL text refused
from clm.engagement import queries, services
from clm.engagement.models import Broadcast, EmailTemplate, OutboundMessage

router = Router(tags=["engagement"])
ROUTES = [("/v1/engagement", router)]


def require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied()


class TemplateIn(InSchema):
    name: str = Field(max_length=150)
    subject: str = Field(max_length=300)
    html_body: str = Field(max_length=200_000)
    sender_id: int | None = None
    subscription_type_id: int | None = None


class TemplatePatch(InSchema):
    name: str | None = Field(None, max_length=150)
    subject: str | None = Field(None, max_length=300)
    html_body: str | None = Field(None, max_length=200_000)
    sender_id: int | None = None
    subscription_type_id: int | None = None


class TemplateOut(Schema):
    id: int
    name: str
    subject: str
    html_body: str
    text_body: str
    sender_id: int | None
    subscription_type_id: int | None
    created_at: datetime
    updated_at: datetime


def _template_data(payload: Schema, *, partial: bool) -> dict[str, Any]:
    raw = payload.model_dump(exclude_unset=partial)
    data = {k: v for k, v in raw.items() if k not in ("sender_id", "subscription_type_id")}
    if "sender_id" in raw:
        data["sender"] = raw["sender_id"]
    if "subscription_type_id" in raw:
        data["subscription_type"] = raw["subscription_type_id"]
    return data


def _template(pk: int) -> EmailTemplate:
    template = EmailTemplate.objects.filter(pk=pk).first()
    if template is None:
        raise NotFound()
    return template


@router.get("/templates", response=list[TemplateOut])
def template_list(request: HttpRequest):
    require(request, "engagement.view_emailtemplate")
    return list(EmailTemplate.objects.order_by("name")[:500])


@router.post("/templates", response={201: TemplateOut})
def template_create(request: HttpRequest, payload: TemplateIn):
    require(request, "engagement.add_emailtemplate")
    template = services.template_save(data=_template_data(payload, partial=False),
                                      actor=request.user)
    return Status(201, template)


@router.get("/templates/{template_id}", response=TemplateOut)
def template_get(request: HttpRequest, template_id: int):
    require(request, "engagement.view_emailtemplate")
    return _template(template_id)


@router.patch("/templates/{template_id}", response=TemplateOut)
def template_update(request: HttpRequest, template_id: int, payload: TemplatePatch):
    require(request, "engagement.change_emailtemplate")
    template = _template(template_id)
    return services.template_save(data=_template_data(payload, partial=True), template=template,
                                  actor=request.user)


@router.delete("/templates/{template_id}", response={204: None})
def template_delete(request: HttpRequest, template_id: int):
    require(request, "engagement.delete_emailtemplate")
    services.template_delete(template=_template(template_id))
    return Status(204, None)


class AudienceIn(InSchema):
    all: bool = False
    tag: str | None = Field(None, max_length=64)
    stage: str | None = Field(None, max_length=32)
    segment: Id | None = None


class BroadcastIn(InSchema):
    name: str = Field(max_length=150)
    template_id: int
    sender_id: int | None = None
    subscription_type_id: int | None = None
    audience: AudienceIn
    scheduled_at: datetime | None = None
    start: bool = Field(False, description="Start (or schedule) right away.")


class BroadcastStatsOut(Schema):
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
    processed: int
    percent: int


class BroadcastOut(Schema):
    id: int
    name: str
    status: str
    template_id: int
    sender_id: int
    subscription_type_id: int
    audience: dict
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    created_at: datetime


def _broadcast(pk: int) -> Broadcast:
    broadcast = Broadcast.objects.filter(pk=pk).first()
    if broadcast is None:
        raise NotFound()
    return broadcast


@router.post("/broadcasts", response={201: BroadcastOut})
def broadcast_create(request: HttpRequest, payload: BroadcastIn):
    require(request, "engagement.add_broadcast")
    if payload.start:
        require(request, "engagement.change_broadcast")
    audience = payload.audience.model_dump(exclude_none=True)
    if not audience.get("all"):
        audience.pop("all", None)
    broadcast = services.broadcast_create(data={
        "name": payload.name, "template": payload.template_id, "sender": payload.sender_id,
        "subscription_type": payload.subscription_type_id, "audience": audience,
        "scheduled_at": payload.scheduled_at}, actor=request.user)
    if payload.start:
        broadcast = services.broadcast_start(broadcast=broadcast, actor=request.user)
    return Status(201, broadcast)


@router.get("/broadcasts/{broadcast_id}", response=BroadcastOut)
def broadcast_get(request: HttpRequest, broadcast_id: int):
    require(request, "engagement.view_broadcast")
    return _broadcast(broadcast_id)


@router.post("/broadcasts/{broadcast_id}/start", response=BroadcastOut)
def broadcast_start(request: HttpRequest, broadcast_id: int):
    require(request, "engagement.change_broadcast")
    return services.broadcast_start(broadcast=_broadcast(broadcast_id), actor=request.user)


@router.get("/broadcasts/{broadcast_id}/stats", response=BroadcastStatsOut)
def broadcast_stats(request: HttpRequest, broadcast_id: int):
    require(request, "engagement.view_broadcast")
    return queries.broadcast_stats(_broadcast(broadcast_id)).as_dict()


class BounceIn(InSchema):
    message_id: str | None = Field(None, max_length=200,
                                   description="The Message-ID header CLM set (or our id).")
    email: str | None = Field(None, max_length=254)
    hard: bool
    reason: str = Field("", max_length=500)


class BounceOut(Schema):
    email: str
    hard: bool
    suppressed: bool


@router.post("/bounces", response=BounceOut)
def bounce(request: HttpRequest, payload: BounceIn):
    """Provider webhook: a bounce of a message (by Message-ID) or an address.

    A hard bounce suppresses the address. Needs a write token with engagement.add_suppression.
    """
    require(request, "engagement.add_suppression")
    message = None
    if payload.message_id:
        ref = payload.message_id.strip()
        # Only messages to contacts the caller may see; anything else is "unknown" (no leak).
        message = visible(OutboundMessage.objects.select_related("contact"), request.user,
                          owner_field="contact__owner").filter(
            provider_message_id=ref if ref.startswith("<") else f"<{ref}>").first()
        if message is None:
            raise NotFound("No message with this Message-ID.", code="unknown_message")
    suppression = services.email_bounce_record(message=message, address=payload.email,
                                               hard=payload.hard, reason=payload.reason)
    email = suppression.email if suppression else (payload.email or message.to_email).lower()
    return {"email": email, "hard": payload.hard, "suppressed": suppression is not None}
