"""Navigation entries of the automation app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Engagement", "Workflows", "automation:workflow_list", "automation.view_workflow"),
    ("Engagement", "Notifications", "automation:notifications", None),
]
