"""Keyset (cursor) pagination over an allowlisted sort field, stable under inserts."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from clm.core.errors import ValidationFailed


@dataclass
class Page:
    items: list
    next_cursor: str | None
    limit: int


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return {"t": "dt", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {"t": "dec", "v": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and value.get("t") == "dt":
        return parse_datetime(value["v"])
    if isinstance(value, dict) and value.get("t") == "dec":
        return Decimal(value["v"])
    return value


def encode_cursor(sort_value: Any, pk: int) -> str:
    raw = json.dumps([_encode(sort_value), pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return _decode(value), int(pk)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationFailed("The cursor is not valid.", field="cursor", code="invalid_cursor") from None


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


def keyset_page(qs: QuerySet, *, sort_field: str, descending: bool, cursor: str | None,
                limit: int) -> Page:
    """One page of `qs` ordered by (sort_field, pk); NULL sort values are not supported."""
    direction = "-" if descending else ""
    qs = qs.order_by(f"{direction}{sort_field}", f"{direction}pk")
    if cursor:
        value, pk = decode_cursor(cursor)
        op = "lt" if descending else "gt"
        if sort_field in ("pk", "id"):
            qs = qs.filter(**{f"pk__{op}": pk})
        else:
            qs = qs.filter(Q(**{f"{sort_field}__{op}": value})
                           | Q(**{sort_field: value, f"pk__{op}": pk}))
    items = list(qs[: limit + 1])
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        next_cursor = encode_cursor(getattr(last, sort_field if sort_field != "pk" else "pk"), last.pk)
    return Page(items=items, next_cursor=next_cursor, limit=limit)
