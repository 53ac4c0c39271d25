"""Navigation entries of the lifecycle app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = []
