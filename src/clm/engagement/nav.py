"""Navigation entries of the engagement app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = []
