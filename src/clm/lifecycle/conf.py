"""Lifecycle settings with their defaults (overridable in Django settings / the environment).

CLM_MQL_SCORE_THRESHOLD  lead score at which the seeded rule moves a lead to MQL (50)
CLM_CHURN_AFTER_DAYS     days without a purchase after which a customer churns (365)
CLM_LIFECYCLE_BULK_MAX   most contacts one bulk manual move may name (500)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "CLM_MQL_SCORE_THRESHOLD": 50,
    "CLM_CHURN_AFTER_DAYS": 365,
    "CLM_LIFECYCLE_BULK_MAX": 500,
}


def setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS.get(name))


def has_setting(name: str) -> bool:
    return name.startswith("CLM_") and (name in DEFAULTS or hasattr(settings, name))
