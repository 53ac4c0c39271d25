"""CSV export rows of contacts and companies from any (already filtered) queryset.

The rows are plain values; write them with `clm.core.csvsafe.csv_response`, which neutralises
cells a spreadsheet would run as formulas. Headers use CLM's field names, which the import
recognises, so an export re-imports as is. Queries are batched: one query per
EXPORT_CHUNK rows plus one for their tags, never one per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from clm.customers.models import Company, Contact, ObjectType, PropertyDefinition

EXPORT_CHUNK = 2000

CONTACT_COLUMNS = [
    "clm_id", "first_name", "last_name", "email", "external_id", "phone", "job_title",
    "company", "owner", "country", "region", "city", "timezone", "date_of_birth", "age_band",
    "income_band", "source", "stage", "tags", "created_at", "updated_at", "last_activity_at",
]
COMPANY_COLUMNS = [
    "clm_id", "name", "domain", "external_id", "industry", "employee_band", "revenue_band",
    "country", "region", "city", "phone", "owner", "stage", "created_at", "updated_at",
]


def _property_keys(object_type: str) -> list[str]:
    return list(PropertyDefinition.objects.filter(object_type=object_type)
                .order_by("key").values_list("key", flat=True))


def _iso(value) -> str:
    return value.isoformat() if value is not None else ""


def contacts_export_rows(qs: QuerySet[Contact]) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) for the contacts in `qs`, in the queryset's order (by id if unordered).

    Custom properties follow the fixed columns, one column per definition key.
    """
    keys = _property_keys(ObjectType.CONTACT)
    header = CONTACT_COLUMNS + keys
    if not qs.query.order_by:
        qs = qs.order_by("pk")
    qs = qs.select_related("company", "owner").prefetch_related("tags")

    def rows() -> Iterator[list[Any]]:
        for c in qs.iterator(chunk_size=EXPORT_CHUNK):
            yield [
                c.pk, c.first_name, c.last_name, c.email or "", c.external_id or "", c.phone,
                c.job_title, c.company.name if c.company_id else "",
                c.owner.get_username() if c.owner_id else "", c.country, c.region, c.city,
                c.timezone, _iso(c.date_of_birth), c.age_band, c.income_band, c.source,
                c.stage, ", ".join(sorted(t.name for t in c.tags.all())), _iso(c.created_at),
                _iso(c.updated_at), _iso(c.last_activity_at),
                *[c.properties.get(k, "") for k in keys],
            ]

    return header, rows()


def companies_export_rows(qs: QuerySet[Company]) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) for the companies in `qs`; custom properties after the fixed columns."""
    keys = _property_keys(ObjectType.COMPANY)
    header = COMPANY_COLUMNS + keys
    if not qs.query.order_by:
        qs = qs.order_by("pk")
    qs = qs.select_related("owner")

    def rows() -> Iterator[list[Any]]:
        for c in qs.iterator(chunk_size=EXPORT_CHUNK):
            yield [
                c.pk, c.name, c.domain or "", c.external_id or "", c.industry, c.employee_band,
                c.revenue_band, c.country, c.region, c.city, c.phone,
                c.owner.get_username() if c.owner_id else "", c.stage, _iso(c.created_at),
                _iso(c.updated_at), *[c.properties.get(k, "") for k in keys],
            ]

    return header, rows()
