"""Import, export and duplicate-merge API (built out in the import work)."""

ROUTES: list = []
