"""Navigation entries of the analytics app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Insight", "Dashboard", "analytics:dashboard", "analytics.view_contactscore"),
    ("Insight", "Lifetime value", "analytics:clv_model", "analytics.view_contactscore"),
]
