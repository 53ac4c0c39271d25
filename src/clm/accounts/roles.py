"""The built-in roles: which model permissions each has and how far it sees.

Kept as data so admins can change them in the admin; `roles_sync` (run by a data migration
and by `clm seed_demo`) creates what is missing without undoing an admin's changes.
"""

from __future__ import annotations

ADMIN, MANAGER, SALES, MARKETING, SUPPORT = "admin", "manager", "sales", "marketing", "support"

# app_label -> model names whose view/add/change/delete permissions a role gets.
CRM_MODELS: dict[str, list[str]] = {
    "customers": ["contact", "company", "consentrecord", "propertydefinition", "importjob",
                  "mergerecord"],
    "timeline": ["event"],
    "analytics": ["transaction", "contactscore", "refreshrun"],
}

ROLE_DEFAULTS: dict[str, dict] = {
    ADMIN: {"scope": "all", "actions": ["view", "add", "change", "delete"], "extra": ["*"]},
    MANAGER: {"scope": "team", "actions": ["view", "add", "change", "delete"], "extra": []},
    SALES: {"scope": "own", "actions": ["view", "add", "change"], "extra": []},
    MARKETING: {"scope": "all", "actions": ["view", "add", "change"], "extra": []},
    SUPPORT: {"scope": "all", "actions": ["view", "change"], "extra": []},
}
