"""Navigation entries of the segments app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Customers", "Segments", "segments:segment_list", "segments.view_segment"),
]
