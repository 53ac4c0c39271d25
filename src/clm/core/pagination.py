"""Keyset (cursor) pagination over an allowlisted sort field, stable under inserts.

Used by every API list and by the UI's "load more" timelines.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Q, QuerySet

from clm.core.errors import ValidationFailed
from clm.core.types import MAX_ID


def parse_sort(sort: str | None, allowed: set[str], default: str) -> tuple[str, bool]:
    """Return (field, descending) for `sort` like '-created_at'; refuse fields not allowlisted."""
    sort = (sort or default).strip()
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    if field not in allowed:
        raise ValidationFailed(
            f"Cannot sort by '{field}'. Allowed: {', '.join(sorted(allowed))}.",
            field="sort", code="invalid_sort",
        )
    return field, descending


def page_limit(limit: int | None) -> int:
    """The page size asked for, defaulted, refused (422 naming `limit`) outside 1..max."""
    if limit is None:
        return settings.CLM_API_DEFAULT_PAGE_SIZE
    maximum = settings.CLM_API_MAX_PAGE_SIZE
    if limit < 1 or limit > maximum:
        raise ValidationFailed(f"limit must be between 1 and {maximum}.", field="limit",
                               code="invalid_limit")
    return limit


def _cursor_encode(field: str, value: Any, pk: int) -> str:
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = str(value)
    raw = json.dumps([field, value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str, field: str, model_field) -> tuple[Any, int]:
    invalid = ValidationFailed("The cursor is not valid for this list and sort.", field="cursor",
                               code="invalid_cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, value, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if name != field or not isinstance(pk, int) or isinstance(pk, bool) \
                or not 0 < pk <= MAX_ID:
            raise invalid
        if value is not None:
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise invalid
            value = model_field.to_python(value)
            if value is None:
                raise invalid
            if isinstance(value, int) and not -MAX_ID <= value <= MAX_ID:
                raise invalid
        return value, pk
    except (ValueError, TypeError, DjangoValidationError):
        raise invalid from None


def paginate(qs: QuerySet, *, sort: str | None, allowed: set[str], default: str,
             cursor: str | None, limit: int | None) -> tuple[list, str | None]:
    """One page of `qs` in keyset order (sort field, then pk) and the cursor of the next.

    The sort field must be allowlisted (422 naming `sort`); NULL values sort last in both
    directions, so nullable fields such as email page correctly. A cursor is bound to its
    sort field; a foreign or forged cursor is a 422 naming `cursor`.
    """
    size = page_limit(limit)
    field, descending = parse_sort(sort, allowed, default)
    model_field = qs.model._meta.get_field("id" if field == "pk" else field)
    nullable = model_field.null
    if nullable:
        order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    else:
        order = f"-{field}" if descending else field
    qs = qs.order_by(order, "-pk" if descending else "pk")
    if cursor:
        value, pk = _cursor_decode(cursor, field, model_field)
        op = "lt" if descending else "gt"
        if field in ("id", "pk"):
            qs = qs.filter(pk__gt=pk) if not descending else qs.filter(pk__lt=pk)
        elif value is None:
            qs = qs.filter(**{f"{field}__isnull": True, f"pk__{op}": pk})
        else:
            after = Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"pk__{op}": pk})
            if nullable:
                after |= Q(**{f"{field}__isnull": True})
            qs = qs.filter(after)
    items = list(qs[: size + 1])
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        last = items[-1]
        next_cursor = _cursor_encode(field, getattr(last, "pk" if field == "id" else field),
                                     last.pk)
    return items, next_cursor
