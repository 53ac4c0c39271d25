"""Reads shared by the UI, API, export and reports."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower

from clm.accounts.queries import visible
from clm.customers.models import Company, ConsentRecord, Contact, FieldChange, ObjectType

CONTACT_SORTS = {"created_at", "updated_at", "last_name", "email", "last_activity_at", "id"}
COMPANY_SORTS = {"created_at", "updated_at", "name", "id"}
# A search matching at most this many contacts is pinned to their ids, so the database sorts a
# few thousand rows instead of walking a sort index over the whole table to find them. Above
# it matches are dense enough (≥ 0.5 % at 1M contacts) that the walk finds a page quickly.
SEARCH_PIN_LIMIT = 5_000
CONTACT_FILTERS = {"owner", "company", "country", "stage", "source", "tag", "age_band",
                   "income_band", "created_after", "created_before", "has_email"}


def contacts_visible(user) -> QuerySet[Contact]:
    return visible(Contact.objects.all(), user)


def companies_visible(user) -> QuerySet[Company]:
    return visible(Company.objects.all(), user)


def _prefix(field: str, text: str) -> Q:
    """`field` starts with `text`, as an index range (LIKE 'x%' cannot use SQLite's index)."""
    return Q(**{f"{field}__gte": text, f"{field}__lt": text + "\uffff"})


def contacts_search(qs: QuerySet[Contact], text: str | None) -> QuerySet[Contact]:
    """Search by name or email: prefix of the full name, the last name or the email.

    Every branch is an index range, so a rare term stays fast at millions of contacts. Apply
    filters first: the search runs one bounded id query at call time (see SEARCH_PIN_LIMIT).
    """
    return contacts_search_counted(qs, text)[0]


def contacts_search_counted(qs: QuerySet[Contact],
                            text: str | None) -> tuple[QuerySet[Contact], int | None]:
    """contacts_search, and how many contacts of `qs` match when that is known for free (the
    search pinned its matches; None otherwise): a list page needs no COUNT query then."""
    text = (text or "").strip().lower()
    if not text:
        return qs, None
    if text.startswith("@"):
        return qs.filter(email__endswith=text), None  # a suffix has no index range to pin
    if "@" in text:
        matches = qs.filter(_prefix("email", text))
    else:
        q = _prefix("search_text", text) | _prefix("last_name_lower", text) | _prefix("email", text)
        if text.lstrip("+").isdigit():
            q |= Q(phone__contains=text.lstrip("+"))
        matches = qs.annotate(last_name_lower=Lower("last_name")).filter(q)
    ids = list(matches.order_by().values_list("pk", flat=True)[: SEARCH_PIN_LIMIT + 1])
    if len(ids) > SEARCH_PIN_LIMIT:
        return matches, None
    if not ids:
        return qs.none(), 0
    # Integers read from the database, inlined as literals: thousands of `pk__in` parameters
    # cost more to prepare and bind, on each query of the page, than the query itself.
    column = f"{connection.ops.quote_name(Contact._meta.db_table)}.{connection.ops.quote_name('id')}"
    pinned = f"{column} IN ({','.join(str(int(i)) for i in ids)})"
    return (qs.filter(RawSQL(pinned, (), output_field=BooleanField())),  # noqa: S611 - int() each
            len(ids))


def contacts_filter(qs: QuerySet[Contact], filters: dict) -> QuerySet[Contact]:
    """Apply the allowlisted filters present in `filters` (ignore empty values)."""
    for key, value in filters.items():
        if value in (None, "") or key not in CONTACT_FILTERS:
            continue
        if key == "owner":
            qs = qs.filter(owner__isnull=True) if value == "none" else qs.filter(owner_id=value)
        elif key == "company":
            qs = qs.filter(company_id=value)
        elif key == "tag":
            qs = qs.filter(tags__name=str(value).lower())
        elif key == "created_after":
            qs = qs.filter(created_at__gte=value)
        elif key == "created_before":
            qs = qs.filter(created_at__lt=value)
        elif key == "has_email":
            qs = qs.filter(email__isnull=not value)
        elif key == "country":
            qs = qs.filter(country=str(value).upper())
        else:
            qs = qs.filter(**{key: value})
    return qs


def companies_search(qs: QuerySet[Company], text: str | None) -> QuerySet[Company]:
    text = (text or "").strip()
    if not text:
        return qs
    return qs.filter(Q(name__istartswith=text) | Q(domain__startswith=text.lower()))


def consent_current(contact: Contact) -> dict[str, ConsentRecord]:
    """The latest consent row per purpose."""
    current: dict[str, ConsentRecord] = {}
    for record in contact.consents.order_by("purpose", "-occurred_at", "-pk"):
        current.setdefault(record.purpose, record)
    return current


def audit_for(object_type: str, object_id: int) -> QuerySet[FieldChange]:
    return (FieldChange.objects.filter(object_type=object_type, object_id=object_id)
            .select_related("actor").order_by("-changed_at", "-pk"))


def contact_audit(contact: Contact) -> QuerySet[FieldChange]:
    return audit_for(ObjectType.CONTACT, contact.pk)


@dataclass
class DuplicateGroup:
    reason: str
    contacts: list[Contact]
