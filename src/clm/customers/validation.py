"""Field-level cleaning of contact and company input, shared by services, import and API."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import available_timezones

from django.contrib.auth import get_user_model

from clm.core.errors import ValidationFailed
from clm.core.normalize import normalize_domain, normalize_email, normalize_phone

AGE_BANDS = ["under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
INCOME_BANDS = ["<25k", "25k-50k", "50k-100k", "100k-200k", "200k+"]
EMPLOYEE_BANDS = ["1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+"]

CONTACT_FIELDS = [
    "first_name", "last_name", "email", "external_id", "phone", "job_title", "company",
    "owner", "country", "region", "city", "timezone", "date_of_birth", "age_band",
    "income_band", "source", "source_detail",
]
COMPANY_FIELDS = [
    "name", "domain", "external_id", "industry", "employee_band", "revenue_band", "country",
    "region", "city", "phone", "owner",
]
_MAX_LENGTHS = {"first_name": 100, "last_name": 100, "job_title": 150, "region": 100,
                "city": 100, "source": 50, "external_id": 100, "name": 200, "industry": 100,
                "revenue_band": 20}
_TIMEZONES: set[str] | None = None


def age_band_for(born: date, today: date | None = None) -> str:
    today = today or date.today()  # noqa: DTZ011 - a birthday is a calendar date
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    for band, upper in (("under 18", 17), ("18-24", 24), ("25-34", 34), ("35-44", 44),
                        ("45-54", 54), ("55-64", 64)):
        if age <= upper:
            return band
    return "65+"


def _text(field: str, value: Any) -> str:
    text = "" if value is None else str(value).strip()
    limit = _MAX_LENGTHS.get(field)
    if limit and len(text) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters.", field=field,
                               code="too_long")
    return text


def _country(value: Any, field: str = "country") -> str:
    text = _text(field, value).upper()
    if text and (len(text) != 2 or not text.isalpha()):
        raise ValidationFailed(f"{field} must be a two-letter ISO country code, not '{value}'.",
                               field=field)
    return text


def _band(field: str, value: Any, allowed: list[str]) -> str:
    text = _text(field, value)
    if text and text not in allowed:
        raise ValidationFailed(f"{field} must be one of: {', '.join(allowed)}.", field=field)
    return text


def _user(value: Any, field: str = "owner"):
    if value in (None, ""):
        return None
    User = get_user_model()
    if isinstance(value, User):
        return value
    lookup = {"pk": value} if str(value).isdigit() else {"username": str(value)}
    user = User.objects.filter(is_active=True, **lookup).first()
    if user is None:
        raise ValidationFailed(f"There is no active user '{value}'.", field=field)
    return user


def _timezone(value: Any) -> str:
    global _TIMEZONES
    text = _text("timezone", value)
    if not text:
        return ""
    if _TIMEZONES is None:
        _TIMEZONES = available_timezones()
    if text not in _TIMEZONES:
        raise ValidationFailed(f"'{text}' is not a time zone (e.g. Europe/Berlin).",
                               field="timezone")
    return text


def _date(field: str, value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        parsed = value
    else:
        try:
            parsed = date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            raise ValidationFailed(f"{field} must be a date (YYYY-MM-DD), not '{value}'.",
                                   field=field) from None
    if parsed > date.today():  # noqa: DTZ011
        raise ValidationFailed(f"{field} cannot be in the future.", field=field)
    return parsed


def clean_contact_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Clean the contact fields present in `data`; unknown keys are refused."""
    from clm.customers.models import Company

    cleaned: dict[str, Any] = {}
    unknown = set(data) - set(CONTACT_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationFailed(f"Unknown contact field '{name}'.", field=name, code="unknown_field")
    for field, value in data.items():
        if field == "email":
            cleaned[field] = normalize_email(value)
        elif field == "phone":
            region = data.get("country") or None
            cleaned[field] = normalize_phone(value, region=str(region) if region else None)
        elif field == "external_id":
            cleaned[field] = _text(field, value) or None
        elif field == "country":
            cleaned[field] = _country(value)
        elif field == "timezone":
            cleaned[field] = _timezone(value)
        elif field == "date_of_birth":
            cleaned[field] = _date(field, value)
        elif field == "age_band":
            cleaned[field] = _band(field, value, AGE_BANDS)
        elif field == "income_band":
            cleaned[field] = _band(field, value, INCOME_BANDS)
        elif field == "owner":
            cleaned[field] = _user(value)
        elif field == "company":
            if value in (None, ""):
                cleaned[field] = None
            elif isinstance(value, Company):
                cleaned[field] = value
            else:
                company = Company.objects.filter(pk=value).first() if str(value).isdigit() else None
                if company is None:
                    raise ValidationFailed(f"There is no company {value}.", field="company")
                cleaned[field] = company
        elif field == "source_detail":
            if not isinstance(value, dict):
                raise ValidationFailed("source_detail must be an object.", field=field)
            cleaned[field] = {str(k)[:50]: str(v)[:500] for k, v in value.items()}
        else:
            cleaned[field] = _text(field, value)
    if cleaned.get("date_of_birth") and not cleaned.get("age_band"):
        cleaned["age_band"] = age_band_for(cleaned["date_of_birth"])
    return cleaned


def clean_company_fields(data: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    unknown = set(data) - set(COMPANY_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationFailed(f"Unknown company field '{name}'.", field=name, code="unknown_field")
    for field, value in data.items():
        if field == "domain":
            cleaned[field] = normalize_domain(value)
        elif field == "external_id":
            cleaned[field] = _text(field, value) or None
        elif field == "country":
            cleaned[field] = _country(value)
        elif field == "phone":
            region = data.get("country") or None
            cleaned[field] = normalize_phone(value, region=str(region) if region else None)
        elif field == "employee_band":
            cleaned[field] = _band(field, value, EMPLOYEE_BANDS)
        elif field == "owner":
            cleaned[field] = _user(value)
        else:
            cleaned[field] = _text(field, value)
    if "name" in cleaned and not cleaned["name"]:
        raise ValidationFailed("A company needs a name.", field="name", code="required")
    return cleaned
