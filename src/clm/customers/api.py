"""Contacts, companies and property definitions: /api/v1/contacts, /companies, /properties.

Every endpoint checks the user's model permission (403 `forbidden`, nothing changed) and the
record's visibility (404, nothing changed), then calls a service or a query.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import ValidationError as PydanticValidationError

from clm.core.errors import DomainError, NotFound, PermissionDenied, ValidationFailed
from clm.customers import services
from clm.customers.models import Company, Contact, PropertyDefinition
from clm.customers.queries import (
    COMPANY_SORTS,
    CONTACT_SORTS,
    companies_search,
    companies_visible,
    contacts_filter,
    contacts_search,
    contacts_visible,
)
from clm.customers.schemas import (
    MAX_ID,
    CompanyFilter,
    CompanyIn,
    CompanyListOut,
    CompanyOut,
    CompanyPatch,
    ContactBatchIn,
    ContactBatchOut,
    ContactFilter,
    ContactIn,
    ContactListOut,
    ContactOut,
    ContactPatch,
    PropertyDefinitionIn,
    PropertyDefinitionListOut,
    PropertyDefinitionOut,
    PropertyDefinitionPatch,
    paginate,
)

contacts_router = Router(tags=["contacts"])
companies_router = Router(tags=["companies"])
properties_router = Router(tags=["properties"])

ROUTES = [
    ("/v1/contacts", contacts_router),
    ("/v1/companies", companies_router),
    ("/v1/properties", properties_router),
]

VIA = "api"
# Services name model fields; the API names the id fields it accepts.
_FIELD_NAMES = {"company": "company_id", "owner": "owner_id"}


def require(request: HttpRequest, *perms: str) -> None:
    """Refuse (403 `forbidden`) unless the user holds every named model permission."""
    user = request.user
    if not all(user.has_perm(p) for p in perms):
        raise PermissionDenied()


def pydantic_error(exc: PydanticValidationError) -> dict[str, Any]:
    """The first error of a pydantic validation as {code, field, message}."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    code = {"missing": "required", "extra_forbidden": "unknown_field"}.get(err.get("type"),
                                                                           "invalid")
    return {"code": code, "field": ".".join(loc) or None, "message": err.get("msg", "Invalid.")}


def _api_fields(exc: DomainError) -> DomainError:
    if exc.field in _FIELD_NAMES:
        exc.field = _FIELD_NAMES[exc.field]
        for err in exc.errors:
            err["field"] = _FIELD_NAMES.get(err.get("field"), err.get("field"))
    return exc


def _get(qs, pk: int):
    """The row with `pk` in the visible queryset `qs`, else 404 (also for absurd ids)."""
    if not 0 < pk <= MAX_ID:
        raise NotFound()
    obj = qs.filter(pk=pk).first()
    if obj is None:
        raise NotFound()
    return obj


def _contact_data(payload: dict[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    for api_name, field in (("company_id", "company"), ("owner_id", "owner")):
        if api_name in data:
            data[field] = data.pop(api_name)
    return data


def _check_company_visible(request: HttpRequest, company_id: int | None) -> None:
    # A contact may only be linked to a company its editor may see.
    if company_id is not None and not companies_visible(request.user).filter(pk=company_id).exists():
        raise ValidationFailed(f"There is no company {company_id}.", field="company_id")


def _contact_out(contact: Contact) -> Contact:
    # Re-read tags after a write so the answer shows what is stored.
    return Contact.objects.prefetch_related("tags").get(pk=contact.pk)


# --- contacts -------------------------------------------------------------------------------

@contacts_router.get("", response=ContactListOut, summary="List contacts")
def contact_list(request: HttpRequest, filters: Query[ContactFilter], sort: str | None = None,
                 limit: int | None = None, cursor: str | None = None):
    """Search (`q`), filter and sort (allowlisted) contacts; keyset pages of `limit`."""
    require(request, "customers.view_contact")
    data = filters.model_dump(exclude_none=True)
    q = data.pop("q", None)
    qs = contacts_search(contacts_filter(contacts_visible(request.user), data), q)
    qs = qs.prefetch_related("tags")
    if "tag" in data:
        qs = qs.distinct()
    items, next_cursor = paginate(qs, sort=sort, allowed=CONTACT_SORTS, default="-created_at",
                                  cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}


@contacts_router.post("", response={201: ContactOut}, summary="Create a contact")
def contact_create(request: HttpRequest, payload: ContactIn):
    require(request, "customers.add_contact")
    body = payload.model_dump(exclude_unset=True)
    tags, properties = body.pop("tags", None), body.pop("properties", None)
    _check_company_visible(request, body.get("company_id"))
    try:
        contact = services.contact_create(data=_contact_data(body), properties=properties,
                                          tags=tags, actor=request.user, via=VIA)
    except DomainError as exc:
        raise _api_fields(exc) from None
    return Status(201, _contact_out(contact))


@contacts_router.post("/batch", response=ContactBatchOut, summary="Upsert contacts in bulk")
def contact_batch(request: HttpRequest, payload: ContactBatchIn):
    """Create or update up to CLM_INGEST_MAX_BATCH contacts matched by external_id or email.

    Each item is answered in order: created, updated, unchanged or rejected (with the
    error). A rejected item changes nothing; the others are kept. Sending the same batch
    again answers `unchanged` for every item that was applied.
    """
    require(request, "customers.add_contact", "customers.change_contact")
    maximum = settings.CLM_INGEST_MAX_BATCH
    if len(payload.contacts) > maximum:
        raise ValidationFailed(f"A batch holds at most {maximum} contacts.", field="contacts",
                               code="too_many")
    visible = contacts_visible(request.user)
    results: list[dict[str, Any]] = []
    with transaction.atomic():
        for index, raw in enumerate(payload.contacts):
            results.append(_contact_batch_item(request, visible, index, raw))
    return {"results": results}


def _contact_batch_item(request: HttpRequest, visible, index: int, raw: Any) -> dict[str, Any]:
    def rejected(code: str, field: str | None, message: str) -> dict[str, Any]:
        return {"index": index, "status": "rejected",
                "error": {"code": code, "field": field, "message": message}}

    if not isinstance(raw, dict):
        return rejected("invalid", None, "Each contact must be an object.")
    try:
        item = ContactIn.model_validate(raw)
    except PydanticValidationError as exc:
        err = pydantic_error(exc)
        return rejected(err["code"], err["field"], err["message"])
    body = item.model_dump(exclude_unset=True)
    tags, properties = body.pop("tags", None), body.pop("properties", None)
    try:
        if not body.get("email") and not body.get("external_id"):
            raise ValidationFailed("A contact needs an email or an external_id to be matched.",
                                   field="email", code="required")
        existing = services.contact_find(email=body.get("email"),
                                         external_id=body.get("external_id"))
        if existing is not None and not visible.filter(pk=existing.pk).exists():
            # Someone else's contact: refuse rather than touch it or create a duplicate.
            raise DomainError("A contact with this email or external_id exists and you may "
                              "not change it.", code="not_found", status=404,
                              field="external_id" if body.get("external_id") else "email")
        _check_company_visible(request, body.get("company_id"))
        contact, outcome = services.contact_upsert(
            data=_contact_data(body), properties=properties, tags=tags, actor=request.user,
            via=VIA)
    except DomainError as exc:
        exc = _api_fields(exc)
        return rejected(exc.code, exc.field, exc.message)
    return {"index": index, "status": outcome, "id": contact.pk}


@contacts_router.get("/{int:contact_id}", response=ContactOut, summary="Get a contact")
def contact_get(request: HttpRequest, contact_id: int):
    require(request, "customers.view_contact")
    return _get(contacts_visible(request.user).prefetch_related("tags"), contact_id)


@contacts_router.patch("/{int:contact_id}", response=ContactOut, summary="Update a contact")
def contact_update(request: HttpRequest, contact_id: int, payload: ContactPatch):
    """Change only the fields sent; `properties` merge (null removes one), `tags` replace."""
    require(request, "customers.change_contact")
    contact = _get(contacts_visible(request.user), contact_id)
    body = payload.model_dump(exclude_unset=True)
    tags, properties = body.pop("tags", None), body.pop("properties", None)
    _check_company_visible(request, body.get("company_id"))
    try:
        services.contact_update(contact=contact, data=_contact_data(body), properties=properties,
                                tags=tags, actor=request.user, via=VIA)
    except DomainError as exc:
        raise _api_fields(exc) from None
    return _contact_out(contact)


@contacts_router.delete("/{int:contact_id}", response={204: None}, summary="Delete a contact")
def contact_delete(request: HttpRequest, contact_id: int):
    require(request, "customers.delete_contact")
    contact = _get(contacts_visible(request.user), contact_id)
    services.contact_delete(contact=contact, actor=request.user, via=VIA)
    return Status(204, None)


# --- companies ------------------------------------------------------------------------------

def _companies_filter(qs, data: dict[str, Any]):
    for key, value in data.items():
        if key == "owner":
            qs = qs.filter(owner__isnull=True) if value == "none" else qs.filter(owner_id=value)
        elif key == "country":
            qs = qs.filter(country=str(value).upper())
        elif key == "industry":
            qs = qs.filter(industry__iexact=value)
        elif key == "stage":
            qs = qs.filter(stage=value)
        elif key == "created_after":
            qs = qs.filter(created_at__gte=value)
        elif key == "created_before":
            qs = qs.filter(created_at__lt=value)
    return qs


def _company_data(payload: dict[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    if "owner_id" in data:
        data["owner"] = data.pop("owner_id")
    return data


@companies_router.get("", response=CompanyListOut, summary="List companies")
def company_list(request: HttpRequest, filters: Query[CompanyFilter], sort: str | None = None,
                 limit: int | None = None, cursor: str | None = None):
    require(request, "customers.view_company")
    data = filters.model_dump(exclude_none=True)
    qs = companies_search(companies_visible(request.user), data.pop("q", None))
    qs = _companies_filter(qs, data)
    items, next_cursor = paginate(qs, sort=sort, allowed=COMPANY_SORTS, default="name",
                                  cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}


@companies_router.post("", response={201: CompanyOut}, summary="Create a company")
def company_create(request: HttpRequest, payload: CompanyIn):
    require(request, "customers.add_company")
    body = payload.model_dump(exclude_unset=True)
    properties = body.pop("properties", None)
    try:
        company = services.company_create(data=_company_data(body), properties=properties,
                                          actor=request.user, via=VIA)
    except DomainError as exc:
        raise _api_fields(exc) from None
    return Status(201, company)


@companies_router.get("/{int:company_id}", response=CompanyOut, summary="Get a company")
def company_get(request: HttpRequest, company_id: int):
    require(request, "customers.view_company")
    return _get(companies_visible(request.user), company_id)


@companies_router.patch("/{int:company_id}", response=CompanyOut, summary="Update a company")
def company_update(request: HttpRequest, company_id: int, payload: CompanyPatch):
    require(request, "customers.change_company")
    company = _get(companies_visible(request.user), company_id)
    body = payload.model_dump(exclude_unset=True)
    properties = body.pop("properties", None)
    try:
        services.company_update(company=company, data=_company_data(body), properties=properties,
                                actor=request.user, via=VIA)
    except DomainError as exc:
        raise _api_fields(exc) from None
    return Company.objects.get(pk=company.pk)


@companies_router.delete("/{int:company_id}", response={204: None}, summary="Delete a company")
def company_delete(request: HttpRequest, company_id: int):
    require(request, "customers.delete_company")
    company = _get(companies_visible(request.user), company_id)
    services.company_delete(company=company, actor=request.user, via=VIA)
    return Status(204, None)


# --- property definitions -------------------------------------------------------------------

@properties_router.get("", response=PropertyDefinitionListOut,
                       summary="List custom property definitions")
def property_list(request: HttpRequest, object_type: str | None = None, limit: int | None = None,
                  cursor: str | None = None):
    require(request, "customers.view_propertydefinition")
    qs = PropertyDefinition.objects.all()
    if object_type:
        qs = qs.filter(object_type=object_type)
    items, next_cursor = paginate(qs, sort=None, allowed={"id"}, default="id", cursor=cursor,
                                  limit=limit)
    return {"items": items, "next_cursor": next_cursor}


@properties_router.post("", response={201: PropertyDefinitionOut},
                        summary="Define a custom property")
def property_create(request: HttpRequest, payload: PropertyDefinitionIn):
    require(request, "customers.add_propertydefinition")
    definition = services.property_definition_create(**payload.model_dump())
    return Status(201, definition)


@properties_router.get("/{int:definition_id}", response=PropertyDefinitionOut,
                       summary="Get a custom property definition")
def property_get(request: HttpRequest, definition_id: int):
    require(request, "customers.view_propertydefinition")
    return _get(PropertyDefinition.objects.all(), definition_id)


@properties_router.patch("/{int:definition_id}", response=PropertyDefinitionOut,
                         summary="Change a custom property definition")
def property_update(request: HttpRequest, definition_id: int, payload: PropertyDefinitionPatch):
    require(request, "customers.change_propertydefinition")
    definition = _get(PropertyDefinition.objects.all(), definition_id)
    return services.property_definition_update(definition=definition,
                                               **payload.model_dump(exclude_unset=True))


@properties_router.delete("/{int:definition_id}", response={204: None},
                          summary="Delete a custom property definition")
def property_delete(request: HttpRequest, definition_id: int):
    require(request, "customers.delete_propertydefinition")
    definition = _get(PropertyDefinition.objects.all(), definition_id)
    services.property_definition_delete(definition=definition)
    return Status(204, None)
