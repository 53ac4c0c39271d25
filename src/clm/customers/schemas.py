"""Pydantic schemas of the customers API, and the API plumbing its routers share.

Input schemas refuse unknown fields, bound every string to its column's length and refuse
text the databases cannot store (NUL characters, NaN/Infinity in JSON), so bad input is a
422 naming the field rather than a database error.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clm.core.pagination import page_limit, paginate  # noqa: F401 - re-exported for routers
from clm.core.types import MAX_ID, Id  # noqa: F401 - re-exported for routers

_MAX_JSON_DEPTH = 20


def check_storable(value: Any, depth: int = 0) -> Any:
    """Refuse values PostgreSQL and SQLite cannot both store: NUL in text, NaN/Infinity."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {_MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, depth + 1)
            check_storable(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item, depth + 1)
    return value


class InSchema(Schema):
    """Base of request bodies: unknown fields are refused, text must be storable."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class BatchSchema(Schema):
    """Base of batch bodies: items are checked one by one, so one bad item spoils nothing."""

    model_config = ConfigDict(extra="forbid")


class ListOut(Schema):
    next_cursor: str | None = None


class PlainOut(BaseModel):
    """Base of outputs built from plain dicts, such as the 1,000 results of a batch: without
    ninja's Schema, whose getter wraps every item (about 50 ms per 1,000-event answer)."""

    model_config = ConfigDict(from_attributes=True)


class ErrorOut(PlainOut):
    code: str
    message: str
    field: str | None = None


# --- contacts -------------------------------------------------------------------------------

class ContactIn(InSchema):
    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)
    email: str | None = Field(None, max_length=254)
    external_id: str | None = Field(None, max_length=100)
    phone: str = Field("", max_length=40)
    job_title: str = Field("", max_length=150)
    company_id: Id | None = None
    owner_id: Id | None = None
    country: str = Field("", max_length=2)
    region: str = Field("", max_length=100)
    city: str = Field("", max_length=100)
    timezone: str = Field("", max_length=64)
    date_of_birth: date | None = None
    age_band: str = Field("", max_length=10)
    income_band: str = Field("", max_length=20)
    source: str = Field("", max_length=50)
    source_detail: dict[str, str] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


class ContactPatch(InSchema):
    """Only the fields sent change; `properties` merge (null removes a key); `tags` replace."""

    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=254)
    external_id: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40)
    job_title: str | None = Field(None, max_length=150)
    company_id: Id | None = None
    owner_id: Id | None = None
    country: str | None = Field(None, max_length=2)
    region: str | None = Field(None, max_length=100)
    city: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    date_of_birth: date | None = None
    age_band: str | None = Field(None, max_length=10)
    income_band: str | None = Field(None, max_length=20)
    source: str | None = Field(None, max_length=50)
    source_detail: dict[str, str] | None = None
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=100)
    properties: dict[str, Any] | None = None


class ContactOut(Schema):
    id: int
    first_name: str
    last_name: str
    email: str | None
    external_id: str | None
    phone: str
    job_title: str
    company_id: int | None
    owner_id: int | None
    country: str
    region: str
    city: str
    timezone: str
    date_of_birth: date | None
    age_band: str
    income_band: str
    tags: list[str]
    source: str
    stage: str
    properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime | None

    @staticmethod
    def resolve_tags(obj) -> list[str]:
        # .all() uses the list endpoint's prefetch; sorted for a stable answer.
        return sorted(t.name for t in obj.tags.all())


class ContactFilter(Schema):
    q: str | None = Field(None, max_length=200, description="Name, email or phone")
    owner: str | None = Field(None, pattern=r"^(none|[1-9][0-9]{0,17})$",
                              description="A user id, or 'none' for unowned contacts")
    company: Id | None = None
    country: str | None = Field(None, max_length=2)
    stage: str | None = Field(None, max_length=32)
    source: str | None = Field(None, max_length=50)
    tag: str | None = Field(None, max_length=64)
    age_band: str | None = Field(None, max_length=10)
    income_band: str | None = Field(None, max_length=20)
    created_after: datetime | None = None
    created_before: datetime | None = None
    has_email: bool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class ContactListOut(ListOut):
    items: list[ContactOut]


class ContactBatchIn(BatchSchema):
    contacts: list[Any] = Field(
        description="Up to CLM_INGEST_MAX_BATCH (1000) ContactIn objects, each with an "
                    "email or an external_id.",
        json_schema_extra={"items": ContactIn.model_json_schema()})


class ContactBatchResultOut(PlainOut):
    index: int
    status: str = Field(description="created, updated, unchanged or rejected")
    id: int | None = None
    error: ErrorOut | None = None


class ContactBatchOut(PlainOut):
    results: list[ContactBatchResultOut]


# --- companies ------------------------------------------------------------------------------

class CompanyIn(InSchema):
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=100)
    industry: str = Field("", max_length=100)
    employee_band: str = Field("", max_length=20)
    revenue_band: str = Field("", max_length=20)
    country: str = Field("", max_length=2)
    region: str = Field("", max_length=100)
    city: str = Field("", max_length=100)
    phone: str = Field("", max_length=40)
    owner_id: Id | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class CompanyPatch(InSchema):
    name: str | None = Field(None, min_length=1, max_length=200)
    domain: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=100)
    industry: str | None = Field(None, max_length=100)
    employee_band: str | None = Field(None, max_length=20)
    revenue_band: str | None = Field(None, max_length=20)
    country: str | None = Field(None, max_length=2)
    region: str | None = Field(None, max_length=100)
    city: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40)
    owner_id: Id | None = None
    properties: dict[str, Any] | None = None


class CompanyOut(Schema):
    id: int
    name: str
    domain: str | None
    external_id: str | None
    industry: str
    employee_band: str
    revenue_band: str
    country: str
    region: str
    city: str
    phone: str
    owner_id: int | None
    stage: str
    properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CompanyFilter(Schema):
    q: str | None = Field(None, max_length=200, description="Name or domain prefix")
    owner: str | None = Field(None, pattern=r"^(none|[1-9][0-9]{0,17})$")
    country: str | None = Field(None, max_length=2)
    industry: str | None = Field(None, max_length=100)
    stage: str | None = Field(None, max_length=32)
    created_after: datetime | None = None
    created_before: datetime | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class CompanyListOut(ListOut):
    items: list[CompanyOut]


# --- property definitions -------------------------------------------------------------------

class PropertyDefinitionIn(InSchema):
    object_type: str = Field(description="contact or company")
    key: str = Field(min_length=1, max_length=64)
    label: str = Field("", max_length=100)
    type: str = Field(description="text, number, date, choice or boolean")
    choices: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list,
                                                                 max_length=500)
    required: bool = False
    help_text: str = Field("", max_length=200)


class PropertyDefinitionPatch(InSchema):
    """Label, choices, required and help may change; key and type may not."""

    label: str | None = Field(None, max_length=100)
    choices: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=500)
    required: bool | None = None
    help_text: str | None = Field(None, max_length=200)


class PropertyDefinitionOut(Schema):
    id: int
    object_type: str
    key: str
    label: str
    type: str
    choices: list[Any]
    required: bool
    help_text: str
    created_at: datetime


class PropertyDefinitionListOut(ListOut):
    items: list[PropertyDefinitionOut]
