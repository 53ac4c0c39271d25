"""Navigation entries of the lifecycle app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Lifecycle", "Stages", "lifecycle:stage_list", "lifecycle.view_stage"),
    ("Lifecycle", "Rules", "lifecycle:rule_list", "lifecycle.view_rule"),
    ("Lifecycle", "Funnel", "lifecycle:report_funnel", "lifecycle.view_stagechange"),
    ("Lifecycle", "Flows", "lifecycle:report_flows", "lifecycle.view_stagechange"),
    ("Lifecycle", "Velocity", "lifecycle:report_velocity", "lifecycle.view_stagechange"),
    ("Lifecycle", "Stages over time", "lifecycle:report_stages", "lifecycle.view_stagechange"),
]
