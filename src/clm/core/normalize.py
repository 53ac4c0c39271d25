"""Normalising the identifiers people type: emails, phones, domains."""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from clm.core.errors import ValidationFailed


def normalize_email(value: str | None, *, field: str = "email") -> str | None:
    """Return the email trimmed and lower-cased, None when blank; refuse an invalid address."""
    if value is None:
        return None
    email = str(value).strip().lower()
    if not email:
        return None
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationFailed(f"'{value}' is not a valid email address.", field=field) from None
    return email


def normalize_phone(value: str | None, *, region: str | None = None, field: str = "phone") -> str:
    """Return the phone number in E.164 ('' when blank); refuse one that cannot be a number."""
    if value is None:
        return ""
    raw = str(value).strip()
    if not raw:
        return ""
    try:
        parsed = phonenumbers.parse(raw, (region or settings.CLM_DEFAULT_PHONE_REGION).upper())
    except phonenumbers.NumberParseException:
        raise ValidationFailed(f"'{raw}' is not a phone number.", field=field) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationFailed(f"'{raw}' is not a valid phone number.", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_domain(value: str | None) -> str | None:
    if value is None:
        return None
    domain = str(value).strip().lower()
    for prefix in ("https://", "http://"):
        if domain.startswith(prefix):
            domain = domain[len(prefix):]
    domain = domain.split("/")[0].removeprefix("www.")
    return domain or None
