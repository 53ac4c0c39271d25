"""Staff UI of segments: the list, the builder (with a live count), a segment's members,
export, snapshot to a static list, and members of static lists added or removed by hand.

Every view requires login and the model permission; members shown, counted and exported are
only the contacts the user may see. Writes go through segments.services.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from clm.accounts.models import Scope
from clm.accounts.queries import user_scope
from clm.analytics.rfm import SEGMENTS as RFM_SEGMENTS
from clm.core.errors import DomainError, ValidationFailed
from clm.customers.models import ObjectType, PropertyDefinition
from clm.customers.queries import contacts_visible
from clm.segments import services
from clm.segments.compiler import OPS_BY_TYPE, PROPERTY_FIELDS
from clm.segments.models import Segment
from clm.segments.queries import definition_preview, segment_contacts, segments_all
from clm.web.queries import CappedPaginator

PAGE_SIZE = 50
EVENT_KINDS = ["order.completed", "page.viewed", "email.opened", "email.clicked",
               "form.submitted", "deal.won", "ticket.opened", "ticket.closed", "nps.answered",
               "survey.answered", "invoice.paid", "payment.failed", "stage.changed",
               "segment.entered", "segment.left"]
FIELD_LABELS = {"tags": "Tags", "interests": "Interests", "created_at": "Created",
                "last_activity_at": "Last activity", "date_of_birth": "Date of birth"}
EMPTY_DEFINITION = {"op": "and", "conditions": []}


def view_perm(*perms: str):
    def decorate(func):
        for perm in reversed(perms):
            func = permission_required(perm, raise_exception=True)(func)
        return login_required(func)
    return decorate


def builder_config() -> dict[str, Any]:
    """What the builder's selects offer: fields with their types, ops by type, stages…"""
    from clm.lifecycle.models import Stage

    fields = [{"name": name, "type": ftype,
               "label": FIELD_LABELS.get(name, name.replace("company.", "Company ")
                                         .replace("_", " ").capitalize())}
              for name, (_orm, ftype) in PROPERTY_FIELDS.items()]
    for key, label, ptype in PropertyDefinition.objects.filter(
            object_type=ObjectType.CONTACT).values_list("key", "label", "type"):
        fields.append({"name": f"properties.{key}", "label": f"{label} (custom)",
                       "type": {"text": "ptext", "date": "pdate"}.get(ptype, ptype)})
    return {
        "fields": fields,
        "ops": {t: sorted(ops) for t, ops in OPS_BY_TYPE.items()},
        "stages": list(Stage.objects.order_by("order").values_list("key", flat=True)),
        "rfm": RFM_SEGMENTS,
        "kinds": EVENT_KINDS,
    }


def _definition_from(request: HttpRequest) -> Any:
    raw = request.POST.get("definition", "")
    try:
        return json.loads(raw) if raw.strip() else EMPTY_DEFINITION
    except json.JSONDecodeError:
        raise ValidationFailed("The definition is not valid JSON.", field="definition") from None


@view_perm("segments.view_segment")
@require_GET
def segment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "segments/segment_list.html", {
        "segments": segments_all(), "sees_all": user_scope(request.user) == Scope.ALL})


@view_perm("segments.view_segment", "customers.view_contact")
@require_POST
def segment_count(request: HttpRequest) -> HttpResponse:
    """The live count fragment of the builder (htmx posts the definition as JSON text)."""
    try:
        preview = definition_preview(_definition_from(request), request.user)
    except ValidationFailed as exc:
        return render(request, "segments/_count.html", {"error": exc})
    return render(request, "segments/_count.html", {"preview": preview})


def _builder(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    error = None
    values = {"name": segment.name if segment else "",
              "description": segment.description if segment else "",
              "kind": segment.kind if segment else Segment.Kind.DYNAMIC,
              "active": segment.active if segment else True,
              "definition": segment.definition if segment and segment.is_dynamic
              else EMPTY_DEFINITION}
    if request.method == "POST":
        values = {"name": request.POST.get("name", ""),
                  "description": request.POST.get("description", ""),
                  "kind": request.POST.get("kind", values["kind"]),
                  "active": request.POST.get("active") == "on",
                  "definition": request.POST.get("definition", "")}
        try:
            data = {**values, "definition": _definition_from(request)}
            if data["kind"] == Segment.Kind.STATIC:
                data.pop("definition")
            if segment is None:
                segment = services.segment_create(data=data, actor=request.user)
                messages.success(request, f"Segment '{segment.name}' created.")
            else:
                data.pop("kind")
                segment = services.segment_update(segment=segment, data=data,
                                                  actor=request.user)
                messages.success(request, f"Segment '{segment.name}' saved.")
            return redirect("segments:segment_detail", pk=segment.pk)
        except DomainError as exc:
            error = exc
    definition = values["definition"]
    return render(request, "segments/segment_builder.html", {
        "segment": segment, "values": values, "error": error,
        "definition_json": definition if isinstance(definition, str)
        else json.dumps(definition, indent=1),
        "config": builder_config(),
    }, status=422 if error else 200)


@view_perm("segments.add_segment")
@require_http_methods(["GET", "POST"])
def segment_create(request: HttpRequest) -> HttpResponse:
    return _builder(request, None)


@view_perm("segments.change_segment")
@require_http_methods(["GET", "POST"])
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _builder(request, get_object_or_404(Segment, pk=pk))


@view_perm("segments.view_segment", "customers.view_contact")
@require_GET
def segment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    try:
        qs = segment_contacts(segment, request.user).select_related("company").order_by("-pk")
        paginator = CappedPaginator(qs, PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        error = None
    except ValidationFailed as exc:  # a definition a later change made invalid
        paginator = page = None
        error = exc
    return render(request, "segments/segment_detail.html", {
        "segment": segment, "page": page, "paginator": paginator, "error": error,
        "definition_json": json.dumps(segment.definition, indent=1)})


@view_perm("segments.view_segment", "customers.view_contact")
@require_GET
def segment_export(request: HttpRequest, pk: int) -> HttpResponse:
    from clm.segments.api import export_response

    return export_response(get_object_or_404(Segment, pk=pk), request.user)


@view_perm("segments.view_segment", "segments.add_segment", "customers.view_contact")
@require_POST
def segment_snapshot(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    try:
        snapshot = services.segment_snapshot(segment=segment, actor=request.user,
                                             within=contacts_visible(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("segments:segment_detail", pk=segment.pk)
    messages.success(request, f"Static list '{snapshot.name}' created with "
                              f"{snapshot.member_count} contacts.")
    return redirect("segments:segment_detail", pk=snapshot.pk)


@view_perm("segments.delete_segment")
@require_POST
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    services.segment_delete(segment=segment, actor=request.user)
    messages.success(request, f"Segment '{segment.name}' deleted.")
    return redirect("segments:segment_list")


@view_perm("segments.change_segment", "customers.view_contact")
@require_POST
def segment_members(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a contact (by id or email) to, or remove one from, a static list."""
    segment = get_object_or_404(Segment, pk=pk)
    visible = contacts_visible(request.user)
    action = request.POST.get("action")
    ref = request.POST.get("contact", "").strip()
    contact_id = int(ref) if ref.isdigit() and len(ref) < 19 else \
        visible.filter(email=ref.lower()).values_list("pk", flat=True).first()
    try:
        if action not in ("add", "remove"):
            raise PermissionDenied
        if contact_id is None:
            raise ValidationFailed(f"There is no contact '{ref[:100]}'.", field="contact")
        change = services.static_members_add if action == "add" else \
            services.static_members_remove
        n = change(segment=segment, contacts=visible, contact_ids=[contact_id],
                   actor=request.user)
        messages.success(request, f"{'Added' if action == 'add' else 'Removed'} {n} contact"
                                  f"{'' if n == 1 else 's'}.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("segments:segment_detail", pk=segment.pk)
