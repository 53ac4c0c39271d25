"""Navigation entries of the web app."""

NAV: list[tuple[str, str, str, str | None]] = []
