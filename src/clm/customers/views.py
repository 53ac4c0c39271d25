"""Staff UI for contacts and companies: lists, record pages, forms, bulk actions.

Every view requires login and the model permission; a record outside the user's visibility is
a 404 and nothing changes. Writes go through customers.services.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from clm.core.csvsafe import csv_response
from clm.core.errors import DomainError, NotFound
from clm.core.pagination import paginate, parse_sort
from clm.customers import services
from clm.customers.exporting import contacts_export_rows
from clm.customers.forms import (
    CONTACT_LIST_PARAMS,
    DEFAULT_STAGES,
    BulkForm,
    CompanyForm,
    ConsentForm,
    ContactFilterForm,
    ContactForm,
    NoteForm,
    owner_choices,
)
from clm.customers.models import Company, Contact, ObjectType, PropertyDefinition, Tag
from clm.customers.queries import (
    COMPANY_SORTS,
    audit_for,
    companies_search,
    companies_visible,
    consent_current,
    contact_audit,
    contacts_visible,
)
from clm.customers.rows import contact_rows
from clm.timeline.queries import contact_event_kinds, contact_timeline
from clm.web.queries import COUNT_CAP, CappedPaginator, saved_views_for
from clm.web.services import clean_query, saved_view_delete, saved_view_save

PAGE_SIZE = 50
SEARCH_COUNT_CAP = 1_000
COMPANY_PAGE_SIZE = 50
TIMELINE_PAGE_SIZE = 25
AUDIT_LIMIT = 50
SAVED_VIEW_PAGE = "contacts"
# (label, sort field, first direction when clicked)
CONTACT_COLUMNS = [("Name", "last_name", ""), ("Email", "email", ""),
                   ("Created", "created_at", "-"), ("Last activity", "last_activity_at", "-")]
KIND_LABELS = {"note.added": "Note", "contact.created": "Created", "contact.updated": "Updated",
               "contact.merged": "Merged", "consent.changed": "Consent",
               "company.updated": "Company updated", "import.row_applied": "Imported"}


def view_perm(perm: str):
    """Login, then the model permission (403 for a signed-in user without it)."""
    def decorate(func):
        return login_required(permission_required(perm, raise_exception=True)(func))
    return decorate


def _contact_or_404(request: HttpRequest, pk: int) -> Contact:
    return get_object_or_404(contacts_visible(request.user).select_related("company", "owner"),
                             pk=pk)


def _company_or_404(request: HttpRequest, pk: int) -> Company:
    return get_object_or_404(companies_visible(request.user).select_related("owner"), pk=pk)


def _list_url(query: str = "") -> str:
    """The contacts list with a cleaned query string (never a URL from the client)."""
    query = clean_query(query, CONTACT_LIST_PARAMS | {"page"}) if query else ""
    url = reverse("customers:contact_list")
    return f"{url}?{query}" if query else url


def _with_params(params, **changes: Any) -> str:
    data = {k: v for k, v in params.items() if k in CONTACT_LIST_PARAMS | {"page"} and v}
    for key, value in changes.items():
        if value in (None, ""):
            data.pop(key, None)
        else:
            data[key] = value
    return urlencode(data)


# --- contacts list ----------------------------------------------------------------------


@view_perm("customers.view_contact")
@require_GET
def contact_list(request: HttpRequest) -> HttpResponse:
    owners = owner_choices("")
    form = ContactFilterForm(request.GET, user=request.user, owners=owners)
    # The list shows neither custom properties (JSON, decoded per row) nor the search column.
    qs = (_in_segment(request, form.apply(contacts_visible(request.user)))
          .select_related("company", "owner").prefetch_related("tags")
          .defer("properties", "search_text"))
    segment = request.GET.get("segment")
    searching = bool(request.GET.get("q") or form.active_filters or request.GET.get("company")
                     or segment)
    # A search or filter scans for matches, so its count stops sooner than the plain list's.
    # The search's own count holds unless a segment narrows the list after it.
    paginator = CappedPaginator(qs, PAGE_SIZE, cap=SEARCH_COUNT_CAP if searching else COUNT_CAP,
                                known_count=None if segment else form.match_count)
    page = paginator.get_page(request.GET.get("page"))
    params = request.GET
    current_sort = ("-" if form.sort_desc else "") + form.sort_field
    columns = []
    for label, field, first in CONTACT_COLUMNS:
        if form.sort_field == field:
            new_sort = field if form.sort_desc else f"-{field}"
            arrow = "↓" if form.sort_desc else "↑"
        else:
            new_sort, arrow = f"{first}{field}", ""
        columns.append({"label": label, "url": "?" + _with_params(params, sort=new_sort, page=None),
                        "arrow": arrow, "active": form.sort_field == field})
    query = _with_params(params, page=None)
    bulk_form = BulkForm(owners=owners) if request.user.has_perm("customers.change_contact") \
        else None
    return render(request, "customers/contact_list.html", {
        "form": form,
        "page": page,
        "rows": contact_rows(page.object_list, selectable=bulk_form is not None),
        "paginator": paginator,
        "columns": columns,
        "current_sort": current_sort,
        "query": query,
        "prev_url": "?" + _with_params(params, page=page.previous_page_number())
        if page.has_previous() else None,
        "next_url": "?" + _with_params(params, page=page.next_page_number())
        if page.has_next() else None,
        "first_url": "?" + _with_params(params, page=None),
        "searching": searching,
        "saved_views": saved_views_for(request.user, SAVED_VIEW_PAGE),
        "bulk_form": bulk_form,
        "tags": Tag.objects.order_by("name").values_list("name", flat=True)[:200],
        "stages": DEFAULT_STAGES,
        "segment": _segment_label(segment),
    })


def _segment_label(segment_id: str | None) -> dict | None:
    if not segment_id:
        return None
    from clm.segments.models import Segment

    found = Segment.objects.filter(pk=int(segment_id)).values("pk", "name").first()
    return {"id": found["pk"], "name": found["name"]} if found else None


@view_perm("customers.view_contact")
@require_GET
def contact_export(request: HttpRequest) -> HttpResponse:
    """Every contact matching the list's search and filters, as CSV."""
    form = ContactFilterForm(request.GET, user=request.user)
    # The list shows neither custom properties (JSON, decoded per row) nor the search column.
    qs = (_in_segment(request, form.apply(contacts_visible(request.user)))
          .select_related("company", "owner").prefetch_related("tags")
          .defer("properties", "search_text"))
    return _export_response(qs)


def _in_segment(request: HttpRequest, qs):
    """Narrow the list to `?segment=<id>`; an unknown or forbidden segment is a 404."""
    from clm.segments.queries import contacts_in_segment

    try:
        return contacts_in_segment(qs, request.GET.get("segment"), request.user)
    except NotFound:
        raise Http404("No such segment.") from None


def _export_response(qs) -> HttpResponse:
    header, rows = contacts_export_rows(qs)
    return csv_response("contacts.csv", header, rows)


@view_perm("customers.view_contact")
@require_POST
def contact_bulk(request: HttpRequest) -> HttpResponse:
    """Bulk assign owner / add tag (after a confirmation page), or export the selection."""
    form = BulkForm(request.POST)
    back = _list_url(request.POST.get("back", ""))
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, errors[0])
        return redirect(back)
    action = form.cleaned_data["action"]
    if action != "export" and not request.user.has_perm("customers.change_contact"):
        raise PermissionDenied
    ids = form.cleaned_data["ids"]
    qs = (contacts_visible(request.user).filter(pk__in=ids)
          .select_related("company", "owner").prefetch_related("tags").order_by("pk"))
    contacts = list(qs)
    if len(contacts) != len(ids):
        raise Http404("Some of these contacts do not exist or are not yours to see.")
    if action == "export":
        return _export_response(qs)
    owner = None
    if action == "assign_owner" and form.cleaned_data.get("owner"):
        owner = get_object_or_404(get_user_model(), pk=form.cleaned_data["owner"],
                                  is_active=True)
    tag = (form.cleaned_data.get("tag") or "").strip().lower()
    if request.POST.get("confirm") != "yes":
        return render(request, "customers/contact_bulk_confirm.html", {
            "action": action, "contacts": contacts[:20], "count": len(contacts), "ids": ids,
            "owner": owner, "tag": tag, "back": request.POST.get("back", ""),
            "back_url": back,
        })
    try:
        if action == "assign_owner":
            changed = services.contacts_bulk_update(contacts=contacts, data={"owner": owner},
                                                    actor=request.user)
        else:
            changed = services.contacts_bulk_update(contacts=contacts, add_tags=[tag],
                                                    actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"Updated {changed} of {len(contacts)} contacts.")
    return redirect(back)


@view_perm("customers.view_contact")
@require_POST
def saved_view_create(request: HttpRequest) -> HttpResponse:
    query = request.POST.get("query", "")
    try:
        view = saved_view_save(user=request.user, page=SAVED_VIEW_PAGE,
                               name=request.POST.get("name", ""), query=query,
                               allowed=CONTACT_LIST_PARAMS)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(_list_url(query))
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(_list_url(view.query))


@view_perm("customers.view_contact")
@require_POST
def saved_view_remove(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        saved_view_delete(user=request.user, page=SAVED_VIEW_PAGE, view_id=pk)
    except NotFound:
        raise Http404 from None
    messages.success(request, "Deleted the saved view.")
    return redirect(_list_url(request.POST.get("back", "")))


# --- contact page -----------------------------------------------------------------------


def _decorate_events(events) -> list:
    """Attach a label and a one-line summary to each event for the timeline."""
    for event in events:
        p = event.properties or {}
        event.label = KIND_LABELS.get(event.kind, event.kind)
        event.is_note = event.kind == "note.added"
        if event.is_note:
            summary = p.get("body", "")
        elif event.kind in ("contact.updated", "company.updated"):
            summary = "; ".join(f"{field}: {old or '—'} → {new or '—'}"
                                for field, (old, new) in list(p.get("changes", {}).items())[:8])
        elif event.kind == "consent.changed":
            summary = f"{p.get('purpose', '')}: {'opted in' if p.get('granted') else 'opted out'}"
        elif event.kind == "contact.created":
            summary = f"Source: {p.get('source') or event.source}"
        else:
            summary = ", ".join(f"{k}: {v}" for k, v in list(p.items())[:6])
        event.summary = summary if len(summary) <= 600 or event.is_note else summary[:600] + "…"
    return events


def _timeline_context(contact: Contact, kind: str, cursor: str | None) -> dict:
    events = contact_timeline(contact, kinds=[kind] if kind else None)
    items, next_cursor = paginate(events, sort=None, allowed={"occurred_at"},
                                  default="-occurred_at", cursor=cursor, limit=TIMELINE_PAGE_SIZE)
    return {"contact": contact, "events": _decorate_events(items), "next_cursor": next_cursor,
            "kind": kind}


def _contact_properties(contact: Contact) -> list[tuple[str, Any]]:
    definitions = {d.key: d for d in PropertyDefinition.objects.filter(
        object_type=ObjectType.CONTACT)}
    shown = []
    for key, definition in definitions.items():
        if key in contact.properties:
            shown.append((definition.label, contact.properties[key]))
    shown += [(key, value) for key, value in contact.properties.items() if key not in definitions]
    return shown


def _detail_context(request: HttpRequest, contact: Contact, **extra) -> dict:
    kind = request.GET.get("kind", "")[:64]
    user = request.user
    context = {
        "contact": contact,
        "tags": sorted(t.name for t in contact.tags.all()),
        "properties": _contact_properties(contact),
        "consents": sorted(consent_current(contact).values(), key=lambda r: r.purpose),
        "consent_history": contact.consents.select_related("recorded_by")
        .order_by("-occurred_at", "-pk")[:50],
        "audit": contact_audit(contact)[:AUDIT_LIMIT],
        "kinds": contact_event_kinds(contact),
        "note_form": NoteForm(),
        "consent_form": ConsentForm(),
        "can_change": user.has_perm("customers.change_contact"),
        "can_delete": user.has_perm("customers.delete_contact"),
        "can_consent": user.has_perm("customers.add_consentrecord"),
        **_timeline_context(contact, kind, None),
    }
    context.update(extra)
    return context


@view_perm("customers.view_contact")
@require_GET
def contact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    contact = _contact_or_404(request, pk)
    return render(request, "customers/contact_detail.html", _detail_context(request, contact))


@view_perm("customers.view_contact")
@require_GET
def contact_timeline_part(request: HttpRequest, pk: int) -> HttpResponse:
    """The timeline (or, with a cursor, its next items) as an htmx fragment."""
    contact = _contact_or_404(request, pk)
    kind = request.GET.get("kind", "")[:64]
    if not request.htmx:
        url = reverse("customers:contact_detail", args=[contact.pk])
        return redirect(f"{url}?{urlencode({'kind': kind})}#timeline" if kind else url)
    cursor = request.GET.get("cursor") or None
    try:
        context = _timeline_context(contact, kind, cursor)
    except DomainError as exc:
        return HttpResponse(exc.message, status=400)
    context["kinds"] = contact_event_kinds(contact) if not cursor else []
    template = "customers/_timeline_items.html" if cursor else "customers/_timeline.html"
    return render(request, template, context)


@view_perm("customers.change_contact")
@require_POST
def contact_note_add(request: HttpRequest, pk: int) -> HttpResponse:
    contact = _contact_or_404(request, pk)
    form = NoteForm(request.POST)
    event = None
    if form.is_valid():
        try:
            event = services.note_add(contact=contact, body=form.cleaned_data["body"],
                                      actor=request.user)
        except DomainError as exc:
            form.add_domain_error(exc)
    if request.htmx:
        if event is None:
            response = render(request, "customers/_note_form.html",
                              {"contact": contact, "note_form": form})
            response["HX-Retarget"] = "#note-form"
            response["HX-Reswap"] = "outerHTML"
            return response
        return render(request, "customers/_note_created.html", {
            "contact": contact, "event": _decorate_events([event])[0], "note_form": NoteForm()})
    if event is None:
        return render(request, "customers/contact_detail.html",
                      _detail_context(request, contact, note_form=form), status=400)
    messages.success(request, "Note added.")
    return redirect(reverse("customers:contact_detail", args=[contact.pk]) + "#timeline")


@view_perm("customers.add_consentrecord")
@require_POST
def contact_consent_add(request: HttpRequest, pk: int) -> HttpResponse:
    contact = _contact_or_404(request, pk)
    form = ConsentForm(request.POST)
    if form.is_valid():
        cd = form.cleaned_data
        try:
            services.consent_record(contact=contact, purpose=cd["purpose"], granted=cd["granted"],
                                    source=cd["source"], policy_version=cd["policy_version"],
                                    actor=request.user)
        except DomainError as exc:
            form.add_domain_error(exc)
        else:
            messages.success(request, "Consent recorded.")
            return redirect(reverse("customers:contact_detail", args=[contact.pk]) + "#consent")
    return render(request, "customers/contact_detail.html",
                  _detail_context(request, contact, consent_form=form), status=400)


# --- create, edit, delete ---------------------------------------------------------------


def _company_names(request: HttpRequest) -> list[str]:
    return list(companies_visible(request.user).order_by("name")
                .values_list("name", flat=True)[:50])


@view_perm("customers.add_contact")
def contact_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ContactForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                contact = services.contact_create(**form.service_kwargs(), actor=request.user)
            except DomainError as exc:
                form.add_domain_error(exc)
            else:
                messages.success(request, f"Created {contact.display_name}.")
                return redirect("customers:contact_detail", pk=contact.pk)
    else:
        form = ContactForm(user=request.user, initial={"owner": str(request.user.pk)})
    return render(request, "customers/contact_form.html",
                  {"form": form, "company_names": _company_names(request)},
                  status=400 if form.errors else 200)


@view_perm("customers.change_contact")
def contact_edit(request: HttpRequest, pk: int) -> HttpResponse:
    contact = _contact_or_404(request, pk)
    if request.method == "POST":
        form = ContactForm(request.POST, user=request.user, contact=contact)
        if form.is_valid():
            try:
                _, changes = services.contact_update(contact=contact, **form.service_kwargs(),
                                                     actor=request.user)
            except DomainError as exc:
                form.add_domain_error(exc)
            else:
                messages.success(request, "Saved." if changes else "Nothing changed.")
                return redirect("customers:contact_detail", pk=contact.pk)
    else:
        form = ContactForm(user=request.user, contact=contact)
    return render(request, "customers/contact_form.html",
                  {"form": form, "contact": contact, "company_names": _company_names(request)},
                  status=400 if form.errors else 200)


@view_perm("customers.delete_contact")
def contact_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows the confirmation page; only a POST deletes."""
    contact = _contact_or_404(request, pk)
    if request.method == "POST":
        name = contact.display_name
        services.contact_delete(contact=contact, actor=request.user)
        messages.success(request, f"Deleted {name}.")
        return redirect("customers:contact_list")
    return render(request, "customers/contact_confirm_delete.html", {
        "contact": contact, "event_count": contact.events.count()})


# --- companies --------------------------------------------------------------------------


@view_perm("customers.view_company")
@require_GET
def company_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "")[:200]
    try:
        sort_field, desc = parse_sort(request.GET.get("sort"), COMPANY_SORTS, "name")
    except DomainError as exc:
        messages.error(request, exc.message)
        sort_field, desc = "name", False
    direction = "-" if desc else ""
    qs = (companies_search(companies_visible(request.user), q).select_related("owner")
          .order_by(f"{direction}{sort_field}", f"{direction}pk"))
    paginator = CappedPaginator(qs, COMPANY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    ids = [c.pk for c in page.object_list]
    counts = dict(contacts_visible(request.user).filter(company_id__in=ids).order_by()
                  .values_list("company_id").annotate(n=Count("id")))
    for company in page.object_list:
        company.contact_count = counts.get(company.pk, 0)

    def url(**changes: Any) -> str:
        data = {"q": q, "sort": request.GET.get("sort", ""), **changes}
        return "?" + urlencode({k: v for k, v in data.items() if v})

    columns = []
    for label, field, first in [("Name", "name", ""), ("Created", "created_at", "-")]:
        active = sort_field == field
        new_sort = (field if desc else f"-{field}") if active else f"{first}{field}"
        columns.append({"label": label, "url": url(sort=new_sort), "active": active,
                        "arrow": ("↓" if desc else "↑") if active else ""})
    return render(request, "customers/company_list.html", {
        "page": page, "paginator": paginator, "q": q, "columns": columns,
        "prev_url": url(page=page.previous_page_number()) if page.has_previous() else None,
        "next_url": url(page=page.next_page_number()) if page.has_next() else None,
        "first_url": url(),
    })


@view_perm("customers.view_company")
@require_GET
def company_detail(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_or_404(request, pk)
    contacts_qs = contacts_visible(request.user).filter(company=company)
    contacts = list(contacts_qs.select_related("owner").order_by("last_name", "first_name", "pk")
                    [:PAGE_SIZE + 1])
    definitions = {d.key: d.label for d in PropertyDefinition.objects.filter(
        object_type=ObjectType.COMPANY)}
    return render(request, "customers/company_detail.html", {
        "company": company,
        "contacts": contacts[:PAGE_SIZE],
        "more_contacts": len(contacts) > PAGE_SIZE,
        "contacts_url": _list_url(urlencode({"company": company.pk})),
        "properties": [(definitions.get(k, k), v) for k, v in company.properties.items()],
        "audit": audit_for(ObjectType.COMPANY, company.pk)[:AUDIT_LIMIT],
        "can_change": request.user.has_perm("customers.change_company"),
    })


@view_perm("customers.add_company")
def company_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = CompanyForm(request.POST)
        if form.is_valid():
            try:
                company = services.company_create(**form.service_kwargs(), actor=request.user)
            except DomainError as exc:
                form.add_domain_error(exc)
            else:
                messages.success(request, f"Created {company.name}.")
                return redirect("customers:company_detail", pk=company.pk)
    else:
        form = CompanyForm(initial={"owner": str(request.user.pk)})
    return render(request, "customers/company_form.html", {"form": form},
                  status=400 if form.errors else 200)


@view_perm("customers.change_company")
def company_edit(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_or_404(request, pk)
    if request.method == "POST":
        form = CompanyForm(request.POST, company=company)
        if form.is_valid():
            try:
                _, changes = services.company_update(company=company, **form.service_kwargs(),
                                                     actor=request.user)
            except DomainError as exc:
                form.add_domain_error(exc)
            else:
                messages.success(request, "Saved." if changes else "Nothing changed.")
                return redirect("customers:company_detail", pk=company.pk)
    else:
        form = CompanyForm(company=company)
    return render(request, "customers/company_form.html", {"form": form, "company": company},
                  status=400 if form.errors else 200)


@view_perm("customers.view_company")
@require_GET
def company_suggest(request: HttpRequest) -> HttpResponse:
    """<option>s of visible companies whose name starts with the typed text (for a datalist)."""
    text = (request.GET.get("company_name") or request.GET.get("q") or "").strip()[:200]
    qs = companies_visible(request.user)
    if text:
        qs = qs.filter(name__istartswith=text)
    names = list(qs.order_by("name").values_list("name", flat=True)[:10])
    return render(request, "customers/_company_options.html", {"names": names})
