"""Validation of admin-defined custom properties."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from clm.core.errors import ValidationFailed
from clm.customers.models import PropertyDefinition, PropertyType


def definitions_for(object_type: str) -> dict[str, PropertyDefinition]:
    return {d.key: d for d in PropertyDefinition.objects.filter(object_type=object_type)}


def coerce_property(definition: PropertyDefinition, value: Any) -> Any:
    """Return `value` as stored for the definition's type (JSON-safe), or refuse it."""
    field = f"properties.{definition.key}"
    if value is None or value == "":
        if definition.required:
            raise ValidationFailed(f"{definition.label} is required.", field=field, code="required")
        return None
    kind = definition.type
    if kind == PropertyType.TEXT:
        text = str(value).strip()
        if len(text) > 2000:
            raise ValidationFailed(f"{definition.label} is longer than 2000 characters.", field=field)
        return text
    if kind == PropertyType.NUMBER:
        if isinstance(value, bool):
            raise ValidationFailed(f"{definition.label} must be a number.", field=field)
        try:
            number = Decimal(str(value).strip().replace(",", ""))
        except InvalidOperation:
            raise ValidationFailed(f"{definition.label} must be a number, not '{value}'.",
                                   field=field) from None
        if not number.is_finite():
            raise ValidationFailed(f"{definition.label} must be a finite number.", field=field)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == PropertyType.DATE:
        if isinstance(value, date):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value).strip()[:10]).isoformat()
        except ValueError:
            raise ValidationFailed(f"{definition.label} must be a date (YYYY-MM-DD), not '{value}'.",
                                   field=field) from None
    if kind == PropertyType.BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "yes", "1", "y", "on"}:
            return True
        if text in {"false", "no", "0", "n", "off"}:
            return False
        raise ValidationFailed(f"{definition.label} must be yes or no, not '{value}'.", field=field)
    if kind == PropertyType.CHOICE:
        text = str(value).strip()
        if text not in definition.choices:
            raise ValidationFailed(
                f"{definition.label} must be one of: {', '.join(map(str, definition.choices))}.",
                field=field)
        return text
    raise ValidationFailed(f"Unknown property type '{kind}'.", field=field)


def validate_properties(object_type: str, values: dict[str, Any], *,
                        existing: dict[str, Any] | None = None,
                        partial: bool = False) -> dict[str, Any]:
    """Merge `values` into `existing` after validating each against its definition.

    Unknown keys are refused (so typos do not silently create data). With `partial`, required
    properties missing from `values` are not checked.
    """
    definitions = definitions_for(object_type)
    result = dict(existing or {})
    for key, value in (values or {}).items():
        definition = definitions.get(key)
        if definition is None:
            raise ValidationFailed(f"There is no {object_type} property '{key}'.",
                                   field=f"properties.{key}", code="unknown_property")
        coerced = coerce_property(definition, value)
        if coerced is None:
            result.pop(key, None)
        else:
            result[key] = coerced
    if not partial:
        for key, definition in definitions.items():
            if definition.required and key not in result:
                raise ValidationFailed(f"{definition.label} is required.",
                                       field=f"properties.{key}", code="required")
    return result
