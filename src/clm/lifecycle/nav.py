"""Navigation entries of the lifecycle app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Lifecycle", "Stages", "lifecycle:stage_list", "lifecycle.view_stage"),
    ("Lifecycle", "Rules", "lifecycle:rule_list", "lifecycle.view_rule"),
]
