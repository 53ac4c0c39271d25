"""Navigation entries of the automation app."""

NAV: list[tuple[str, str, str, str | None]] = []
