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
    "lifecycle": ["stage", "rule", "stagechange", "manualmove"],
    "segments": ["segment"],
    "automation": ["workflow", "enrollment", "steprun", "notification"],
    "engagement": ["emailtemplate", "senderidentity", "subscriptiontype", "broadcast",
                   "outboundmessage", "suppression"],
}

# Custom permissions (app_label, codename) per role, beyond the model actions.
EXTRA_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "manager": [("lifecycle", "move_stage")],
    "sales": [("lifecycle", "move_stage")],
    "marketing": [("lifecycle", "move_stage")],
}

# actions: the default actions on every CRM model; apps: per-app overrides (absent app -> default,
# empty list -> none). Business-wide insight (analytics) is for managers and marketing.
ROLE_DEFAULTS: dict[str, dict] = {
    ADMIN: {"scope": "all", "actions": ["view", "add", "change", "delete"], "extra": ["*"]},
    MANAGER: {"scope": "team", "actions": ["view", "add", "change", "delete"], "extra": []},
    SALES: {"scope": "own", "actions": ["view", "add", "change"], "extra": [],
            "apps": {"analytics": [], "lifecycle": ["view"], "engagement": [],
                     "segments": [], "automation": []}},
    MARKETING: {"scope": "all", "actions": ["view", "add", "change"], "extra": [],
                "apps": {"lifecycle": ["view"]}},
    SUPPORT: {"scope": "all", "actions": ["view", "change"], "extra": [],
              "apps": {"analytics": [], "lifecycle": ["view"], "engagement": ["view"],
                       "segments": [], "automation": []}},
}


def role_permission_codenames(role: str) -> list[tuple[str, str]]:
    """(app_label, codename) pairs a built-in role gets by default."""
    spec = ROLE_DEFAULTS[role]
    pairs = []
    for app, models in CRM_MODELS.items():
        actions = spec.get("apps", {}).get(app, spec["actions"])
        pairs.extend((app, f"{action}_{model}") for model in models for action in actions)
    return pairs + EXTRA_PERMISSIONS.get(role, [])
