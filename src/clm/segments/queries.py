"""Reads of segments: who is in one (for a user, or for the system), counts and previews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from clm.customers.models import Contact
from clm.customers.queries import contacts_visible
from clm.segments.compiler import compile_definition
from clm.segments.models import Segment, SegmentMembership

PREVIEW_SIZE = 10


def segment_q(segment: Segment, *, now: datetime | None = None) -> Q:
    """The Q over Contact admitting the segment's members now.

    Dynamic: its compiled definition. Static: its SegmentMembership rows.
    """
    if segment.is_dynamic:
        return compile_definition(segment.definition, now=now)
    return Q(Exists(SegmentMembership.objects.filter(segment_id=segment.pk,
                                                     contact_id=OuterRef("pk"))))


def segment_contacts(segment: Segment, user) -> QuerySet[Contact]:
    """The segment's members that `user` may see (unordered; callers sort and page)."""
    return contacts_visible(user).filter(segment_q(segment))


def segment_contact_ids(segment: Segment, *, now: datetime | None = None) -> QuerySet:
    """Ids of all the segment's members, with no visibility restriction: for system use
    (evaluation, broadcasts, workflows), never to show a user."""
    return Contact.objects.filter(segment_q(segment, now=now)).values_list("pk", flat=True)


def segments_all() -> QuerySet[Segment]:
    return Segment.objects.select_related("created_by").order_by("name")


@dataclass
class Preview:
    count: int
    contacts: list[Contact]


def definition_preview(definition: Any, user, *, limit: int = PREVIEW_SIZE) -> Preview:
    """Count of the contacts `user` may see that `definition` matches, and the first few.

    Raises ValidationFailed (field = path in the definition) for an invalid definition.
    """
    qs = contacts_visible(user).filter(compile_definition(definition))
    # Newest ids first: the primary key index serves the order without sorting the matches.
    first = list(qs.order_by("-pk").only("pk", "first_name", "last_name", "email", "country",
                                         "stage")[:limit])
    count = len(first) if len(first) < limit else qs.count()
    return Preview(count=count, contacts=first)


def contacts_in_segment(qs: QuerySet[Contact], segment_id: str | int | None,
                        user) -> QuerySet[Contact]:
    """`qs` narrowed to the members of segment `segment_id` (the `?segment=` parameter of the
    contact list and its export). No id: `qs` unchanged. An unknown id, or a user without
    `segments.view_segment`, raises NotFound (the list shows a 404, nothing leaks).
    `qs` must already apply the user's visibility (e.g. contacts_visible(user))."""
    from clm.core.errors import NotFound

    if segment_id in (None, ""):
        return qs
    text = str(segment_id)
    if not text.isdigit() or len(text) > 18 or not user.has_perm("segments.view_segment"):
        raise NotFound()
    segment = Segment.objects.filter(pk=int(text)).first()
    if segment is None:
        raise NotFound()
    return qs.filter(segment_q(segment))
