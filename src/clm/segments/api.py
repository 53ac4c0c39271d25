"""Segments API: /api/v1/segments — CRUD, live count, members, CSV export, snapshot.

Every endpoint checks the model permission (403 `forbidden`, nothing changes). Segments are
shared by everyone allowed to view them; the contacts an answer lists or counts are only
those the user may see. Errors in a definition name their path, e.g.
`definition.conditions[2].op`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from clm.accounts.models import Scope
from clm.accounts.queries import user_scope
from clm.core.csvsafe import csv_response
from clm.core.errors import NotFound, PermissionDenied, ValidationFailed
from clm.customers.queries import CONTACT_SORTS, contacts_visible
from clm.customers.schemas import MAX_ID, ContactListOut, Id, InSchema, paginate
from clm.segments import services
from clm.segments.models import Segment
from clm.segments.queries import definition_preview, segment_contacts, segments_all

router = Router(tags=["segments"])
ROUTES = [("/v1/segments", router)]

VIEW, ADD, CHANGE, DELETE = ("segments.view_segment", "segments.add_segment",
                             "segments.change_segment", "segments.delete_segment")
VIEW_CONTACT = "customers.view_contact"


def require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied()


def _get(pk: int) -> Segment:
    if not 0 < pk <= MAX_ID:
        raise NotFound()
    segment = Segment.objects.filter(pk=pk).first()
    if segment is None:
        raise NotFound()
    return segment


def _definition_field(exc: ValidationFailed) -> ValidationFailed:
    exc.field = f"definition.{exc.field}" if exc.field else "definition"
    return exc


# --- schemas --------------------------------------------------------------------------------

class SegmentIn(InSchema):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=500)] = ""
    kind: Literal["dynamic", "static"] = "dynamic"
    definition: dict[str, Any] | None = None
    active: bool = True


class SegmentPatch(InSchema):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    definition: dict[str, Any] | None = None
    active: bool | None = None


class SegmentOut(Schema):
    id: int
    name: str
    description: str
    kind: str
    definition: dict[str, Any]
    active: bool
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime
    last_evaluated_at: datetime | None
    member_count: int | None = Field(
        None, description="Members at the last evaluation; only for users who see all contacts.")


class SegmentListOut(Schema):
    items: list[SegmentOut]


class CountIn(InSchema):
    definition: dict[str, Any]


class PreviewContactOut(Schema):
    id: int
    name: str
    email: str | None
    country: str
    stage: str


class CountOut(Schema):
    count: int
    contacts: list[PreviewContactOut]


class MembersIn(InSchema):
    add: Annotated[list[Id], Field(max_length=services.MAX_MANUAL_MEMBERS)] = []
    remove: Annotated[list[Id], Field(max_length=services.MAX_MANUAL_MEMBERS)] = []


class MembersOut(Schema):
    added: int
    removed: int


class SnapshotIn(InSchema):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None


def _out(segment: Segment, request: HttpRequest) -> dict[str, Any]:
    sees_all = user_scope(request.user) == Scope.ALL
    return {**{f: getattr(segment, f) for f in (
        "id", "name", "description", "kind", "definition", "active", "created_by_id",
        "created_at", "updated_at", "last_evaluated_at")},
        "member_count": segment.member_count if sees_all else None}


# --- endpoints ------------------------------------------------------------------------------

@router.get("", response=SegmentListOut, summary="List segments")
def segment_list(request: HttpRequest):
    require(request, VIEW)
    return {"items": [_out(s, request) for s in segments_all()]}


@router.post("", response={201: SegmentOut}, summary="Create a segment")
def segment_create(request: HttpRequest, payload: SegmentIn):
    require(request, ADD)
    data = payload.model_dump()
    if data["kind"] == "static" and data["definition"] is None:
        data.pop("definition")
    segment = services.segment_create(data=data, actor=request.user)
    return Status(201, _out(segment, request))


@router.post("/count", response=CountOut, summary="Count the contacts a definition matches")
def segment_count(request: HttpRequest, payload: CountIn):
    """The live count while editing: how many of the contacts you may see match, and the
    first ten of them (newest first)."""
    require(request, VIEW, VIEW_CONTACT)
    try:
        preview = definition_preview(payload.definition, request.user)
    except ValidationFailed as exc:
        raise _definition_field(exc) from None
    return {"count": preview.count, "contacts": [
        {"id": c.pk, "name": c.display_name, "email": c.email, "country": c.country,
         "stage": c.stage} for c in preview.contacts]}


@router.get("/{segment_id}", response=SegmentOut, summary="Get a segment")
def segment_get(request: HttpRequest, segment_id: int):
    require(request, VIEW)
    return _out(_get(segment_id), request)


@router.patch("/{segment_id}", response=SegmentOut, summary="Change a segment")
def segment_update(request: HttpRequest, segment_id: int, payload: SegmentPatch):
    require(request, CHANGE)
    segment = _get(segment_id)
    data = payload.model_dump(exclude_unset=True)
    segment = services.segment_update(segment=segment, data=data, actor=request.user)
    return _out(segment, request)


@router.delete("/{segment_id}", response={204: None}, summary="Delete a segment")
def segment_delete(request: HttpRequest, segment_id: int):
    require(request, DELETE)
    services.segment_delete(segment=_get(segment_id), actor=request.user)
    return Status(204, None)


@router.get("/{segment_id}/contacts", response=ContactListOut, summary="Members of a segment")
def segment_members(request: HttpRequest, segment_id: int, sort: str | None = None,
                    limit: int | None = None, cursor: str | None = None):
    """The segment's members you may see, in keyset pages (`cursor` from `next_cursor`)."""
    require(request, VIEW, VIEW_CONTACT)
    segment = _get(segment_id)
    qs = segment_contacts(segment, request.user).prefetch_related("tags")
    items, next_cursor = paginate(qs, sort=sort, allowed=CONTACT_SORTS, default="id",
                                  cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{segment_id}/export.csv", summary="Export a segment's members as CSV")
def segment_export(request: HttpRequest, segment_id: int):
    require(request, VIEW, VIEW_CONTACT)
    segment = _get(segment_id)
    return export_response(segment, request.user)


def export_response(segment: Segment, user):
    """The CSV download of the segment's members `user` may see (shared with the UI)."""
    from clm.customers.exporting import contacts_export_rows

    header, rows = contacts_export_rows(segment_contacts(segment, user).order_by("pk"))
    return csv_response(f"segment-{segment.pk}.csv", header, rows)


@router.post("/{segment_id}/snapshot", response={201: SegmentOut},
             summary="Snapshot a segment into a new static list")
def segment_snapshot(request: HttpRequest, segment_id: int, payload: SnapshotIn | None = None):
    """A new static list of the segment's current members that you may see."""
    require(request, VIEW, ADD, VIEW_CONTACT)
    segment = _get(segment_id)
    snapshot = services.segment_snapshot(
        segment=segment, name=payload.name if payload else None, actor=request.user,
        within=contacts_visible(request.user))
    return Status(201, _out(snapshot, request))


@router.post("/{segment_id}/members", response=MembersOut,
             summary="Add or remove contacts of a static list")
def segment_members_change(request: HttpRequest, segment_id: int, payload: MembersIn):
    require(request, CHANGE, VIEW_CONTACT)
    segment = _get(segment_id)
    visible = contacts_visible(request.user)
    added = removed = 0
    with transaction.atomic():  # both or neither
        if payload.add:
            added = services.static_members_add(segment=segment, contacts=visible,
                                                contact_ids=payload.add, actor=request.user)
        if payload.remove:
            removed = services.static_members_remove(segment=segment, contacts=visible,
                                                     contact_ids=payload.remove,
                                                     actor=request.user)
    return {"added": added, "removed": removed}
