"""Import, export and duplicate-merge API.

- POST /api/v1/imports (multipart: file, type, optional mapping JSON) → the job
- GET  /api/v1/imports/{id} → status, progress and counts; GET …/{id}/errors.csv
- GET  /api/v1/exports/contacts.csv, /api/v1/exports/companies.csv (list filters apply)
- GET  /api/v1/duplicates → candidate groups; POST /api/v1/duplicates/merge
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from clm.core.csvsafe import csv_response
from clm.core.errors import NotFound, PermissionDenied, ValidationFailed
from clm.core.types import Id
from clm.customers.exporting import companies_export_rows, contacts_export_rows
from clm.customers.importing import (
    import_errors_rows,
    import_job_create,
    import_job_get,
    import_job_start,
    import_summary,
)
from clm.customers.merging import contact_merge, duplicate_groups, merge_contacts_for
from clm.customers.queries import (
    companies_search,
    companies_visible,
    contacts_filter,
    contacts_search,
    contacts_visible,
)
from clm.customers.schemas import CompanyFilter, ContactFilter

imports_router = Router(tags=["imports"])
exports_router = Router(tags=["exports"])
duplicates_router = Router(tags=["duplicates"])

MAX_DUPLICATE_GROUPS = 200


def _require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied()


class ImportOut(Schema):
    id: int
    type: str
    file: str
    status: str
    total_rows: int
    processed_rows: int
    progress_percent: int
    created: int
    updated: int
    unchanged: int
    errors: int
    failure: str
    created_at: datetime
    finished_at: datetime | None
    mapping: dict[str, str]


@imports_router.post("", response={201: ImportOut}, summary="Import a CSV of contacts or companies")
def import_create(request: HttpRequest, file: File[UploadedFile], type: Form[str],
                  mapping: Form[str | None] = None):
    """Upload a CSV (`type` contacts or companies). Files up to CLM_IMPORT_INLINE_MAX_ROWS rows
    are imported before the answer; larger ones run in the background: poll the job.

    `mapping` is optional JSON {"column header": "field"} overriding the recognised headers
    ("" ignores a column; custom properties are "property:<key>").
    """
    _require(request, "customers.add_importjob")
    parsed: Any = None
    if mapping:
        try:
            parsed = json.loads(mapping)
        except ValueError:
            raise ValidationFailed("mapping must be JSON: {\"column\": \"field\"}.",
                                   field="mapping") from None
    job = import_job_create(object_type=type, file=file, mapping=parsed, actor=request.user)
    job = import_job_start(job=job)
    return Status(201, import_summary(job))


@imports_router.get("/{int:job_id}", response=ImportOut, summary="Status of an import")
def import_get(request: HttpRequest, job_id: int):
    return import_summary(import_job_get(request.user, job_id))


@imports_router.get("/{int:job_id}/errors.csv", summary="The bad rows of an import as CSV")
def import_errors(request: HttpRequest, job_id: int):
    job = import_job_get(request.user, job_id)
    header, rows = import_errors_rows(job)
    return csv_response(f"import-{job.pk}-errors.csv", header, rows)


@exports_router.get("/contacts.csv", summary="Export contacts (the list's search and filters)")
def export_contacts(request: HttpRequest, filters: Query[ContactFilter]):
    _require(request, "customers.view_contact")
    data = filters.model_dump(exclude_none=True)
    q = data.pop("q", None)
    qs = contacts_search(contacts_filter(contacts_visible(request.user), data), q)
    if "tag" in data:
        qs = qs.distinct()
    header, rows = contacts_export_rows(qs.order_by("pk"))
    return csv_response("contacts.csv", header, rows)


@exports_router.get("/companies.csv", summary="Export companies (the list's search and filters)")
def export_companies(request: HttpRequest, filters: Query[CompanyFilter]):
    _require(request, "customers.view_company")
    data = filters.model_dump(exclude_none=True)
    qs = companies_search(companies_visible(request.user), data.pop("q", None))
    lookups = {"country": "country", "industry": "industry__iexact", "stage": "stage",
               "created_after": "created_at__gte", "created_before": "created_at__lt"}
    for key, value in data.items():
        if key == "owner":
            qs = qs.filter(owner__isnull=True) if value == "none" else qs.filter(owner_id=value)
        elif key in lookups:
            qs = qs.filter(**{lookups[key]: value.upper() if key == "country" else value})
    header, rows = companies_export_rows(qs.order_by("pk"))
    return csv_response("companies.csv", header, rows)


class DuplicateContactOut(Schema):
    id: int
    display_name: str
    email: str | None
    phone: str
    company_id: int | None
    created_at: datetime


class DuplicateGroupOut(Schema):
    reason: str
    contacts: list[DuplicateContactOut]


class MergeIn(Schema):
    survivor_id: Id
    loser_ids: list[Id] = Field(min_length=1, max_length=9)


class MergeOut(Schema):
    id: int
    display_name: str
    email: str | None
    merged_ids: list[int]


@duplicates_router.get("", response=list[DuplicateGroupOut], summary="Duplicate candidates")
def duplicates_list(request: HttpRequest, limit: int = Query(50, ge=1, le=MAX_DUPLICATE_GROUPS),
                    reason: str | None = None):
    """Groups of contacts you can see that may be one person (same phone, same email name and
    last name, same name at the same company)."""
    _require(request, "customers.view_contact")
    return duplicate_groups(contacts_visible(request.user), limit=limit,
                            reasons=[reason] if reason else None)


@duplicates_router.post("/merge", response=MergeOut, summary="Merge contacts into one")
def duplicates_merge(request: HttpRequest, payload: MergeIn):
    """Merge `loser_ids` into `survivor_id`; 404 if you cannot see any of them."""
    if payload.survivor_id in payload.loser_ids:
        raise ValidationFailed("The survivor cannot also be merged away.", field="loser_ids")
    contacts = merge_contacts_for(request.user, [payload.survivor_id, *payload.loser_ids])
    if not contacts:
        raise NotFound()
    survivor = contact_merge(survivor=contacts[0], losers=contacts[1:], actor=request.user,
                             via="api")
    return {"id": survivor.pk, "display_name": survivor.display_name, "email": survivor.email,
            "merged_ids": payload.loser_ids}


ROUTES = [
    ("/v1/imports", imports_router),
    ("/v1/exports", exports_router),
    ("/v1/duplicates", duplicates_router),
]
