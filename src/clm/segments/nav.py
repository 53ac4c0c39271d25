"""Navigation entries of the segments app."""

NAV: list[tuple[str, str, str, str | None]] = []
