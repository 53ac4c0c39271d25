"""Staff UI: the CSV import wizard (upload → mapping → confirm → progress → report) and the
duplicates review with merge.

Every view requires login and the model permissions; an import or contact outside the user's
visibility is a 404 and nothing changes. Writes go through importing / merging services.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods

from clm.core.csvsafe import csv_response
from clm.core.errors import DomainError, NotFound
from clm.core.errors import PermissionDenied as DomainPermissionDenied
from clm.customers.importing import (
    import_errors_rows,
    import_job_create,
    import_job_get,
    import_job_set_mapping,
    import_job_start,
    import_jobs_visible,
    import_preview,
    mapping_choices,
)
from clm.customers.merging import REASONS, contact_merge, duplicate_groups, merge_contacts_for
from clm.customers.models import ImportJob, ObjectType
from clm.customers.queries import contacts_visible

ERRORS_SHOWN = 200
DUPLICATE_GROUPS_SHOWN = 50


def _job(request: HttpRequest, pk: int) -> ImportJob:
    try:
        return import_job_get(request.user, pk)
    except NotFound:
        raise Http404("No such import.") from None


def _require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied


@login_required
@require_http_methods(["GET", "POST"])
def import_start(request: HttpRequest) -> HttpResponse:
    """Step 1: choose contacts or companies and upload the CSV."""
    _require(request, "customers.add_importjob")
    error = None
    object_type = request.POST.get("type", ObjectType.CONTACT)
    if request.method == "POST":
        try:
            job = import_job_create(object_type=object_type, file=request.FILES.get("file"),
                                    actor=request.user, require_identifier=False)
            return redirect("customers:import_mapping", pk=job.pk)
        except DomainPermissionDenied:
            raise PermissionDenied from None
        except DomainError as exc:
            error = exc.message
    recent = (import_jobs_visible(request.user).select_related("created_by")
              .order_by("-created_at")[:10])
    return render(request, "customers/import_start.html", {
        "error": error, "object_type": object_type, "recent": recent,
        "types": [(ObjectType.CONTACT, "Contacts"), (ObjectType.COMPANY, "Companies")],
    }, status=400 if error else 200)


@login_required
@require_http_methods(["GET", "POST"])
def import_mapping(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 2: preview the first rows and map each column to a field (or ignore it)."""
    job = _job(request, pk)
    _require(request, "customers.add_importjob")
    if job.status != ImportJob.Status.PENDING or job.mapping.get("queued"):
        return redirect("customers:import_detail", pk=job.pk)
    error = None
    targets = job.mapping["targets"]
    if request.method == "POST":
        targets = [request.POST.get(f"column_{i}", "") for i in range(len(job.mapping["headers"]))]
        try:
            import_job_set_mapping(job=job, mapping=targets)
            return redirect("customers:import_confirm", pk=job.pk)
        except DomainError as exc:
            error = exc.message
    columns = list(zip(job.mapping["headers"], targets, strict=True))
    return render(request, "customers/import_mapping.html", {
        "job": job, "columns": columns, "choices": mapping_choices(job.object_type),
        "preview": import_preview(job), "error": error,
    }, status=400 if error else 200)


@login_required
@require_http_methods(["GET", "POST"])
def import_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 3: show what will happen; starting runs the import (or queues a large one)."""
    job = _job(request, pk)
    _require(request, "customers.add_importjob")
    if job.status != ImportJob.Status.PENDING or job.mapping.get("queued"):
        return redirect("customers:import_detail", pk=job.pk)
    labels = dict(mapping_choices(job.object_type))
    mapped = [(h, labels.get(t, t)) for h, t in zip(job.mapping["headers"],
                                                    job.mapping["targets"], strict=True) if t]
    ignored = [h for h, t in zip(job.mapping["headers"], job.mapping["targets"], strict=True)
               if not t]
    if request.method == "POST":
        try:
            import_job_start(job=job)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("customers:import_mapping", pk=job.pk)
        return redirect("customers:import_detail", pk=job.pk)
    return render(request, "customers/import_confirm.html",
                  {"job": job, "mapped": mapped, "ignored": ignored})


def _report_context(job: ImportJob) -> dict:
    return {"job": job, "errors": job.errors[:ERRORS_SHOWN],
            "more_errors": max(0, job.error_count - ERRORS_SHOWN),
            "headers": job.mapping.get("headers", []),
            "running": job.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)}


@login_required
@require_GET
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Steps 4 and 5: progress while it runs (polled), then the report."""
    job = _job(request, pk)
    if job.status == ImportJob.Status.PENDING and not job.mapping.get("queued"):
        return redirect("customers:import_mapping", pk=job.pk)
    return render(request, "customers/import_detail.html", _report_context(job))


@login_required
@require_GET
def import_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress / report fragment the detail page polls with htmx every second."""
    job = _job(request, pk)
    return render(request, "customers/import_status.html", _report_context(job))


@login_required
@require_GET
def import_errors_csv(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    header, rows = import_errors_rows(job)
    return csv_response(f"import-{job.pk}-errors.csv", header, rows)


@login_required
@require_GET
def duplicates(request: HttpRequest) -> HttpResponse:
    """Candidate groups of contacts that may be one person, each with a survivor to pick."""
    _require(request, "customers.view_contact")
    reason = request.GET.get("reason") or None
    if reason not in REASONS:
        reason = None
    groups = duplicate_groups(contacts_visible(request.user), limit=DUPLICATE_GROUPS_SHOWN,
                              reasons=[reason] if reason else None)
    return render(request, "customers/duplicates_list.html", {
        "groups": groups, "reasons": REASONS, "reason": reason,
        "may_merge": request.user.has_perm("customers.change_contact")
        and request.user.has_perm("customers.add_mergerecord"),
    })


def _ids(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values if v]
    except ValueError:
        raise Http404("No such contact.") from None


def _contact_url(contact) -> str:
    try:
        return reverse("customers:contact_detail", args=[contact.pk])
    except NoReverseMatch:  # pragma: no cover - the contact page exists in the full app
        return reverse("customers:duplicates")


@login_required
@require_http_methods(["GET", "POST"])
def duplicates_merge(request: HttpRequest) -> HttpResponse:
    """Confirm (GET) and merge (POST) the chosen contacts into the chosen survivor."""
    params = request.POST if request.method == "POST" else request.GET
    ids = _ids(params.getlist("ids"))
    survivor_id = _ids([params.get("survivor", "")])
    if not survivor_id or survivor_id[0] not in ids:
        messages.error(request, "Pick which contact to keep.")
        return redirect("customers:duplicates")
    try:
        contacts = merge_contacts_for(request.user, [survivor_id[0], *[i for i in ids
                                                                        if i != survivor_id[0]]])
    except NotFound:
        raise Http404("No such contact.") from None
    except DomainPermissionDenied:
        raise PermissionDenied from None
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("customers:duplicates")
    survivor, losers = contacts[0], contacts[1:]
    if request.method == "POST":
        merged = contact_merge(survivor=survivor, losers=losers, actor=request.user, via="ui")
        messages.success(request, f"Merged {len(losers)} contact(s) into {merged.display_name}.")
        return redirect(_contact_url(merged))
    return render(request, "customers/duplicates_confirm.html",
                  {"survivor": survivor, "losers": losers, "ids": [c.pk for c in contacts]})
