"""API of the segments app: ROUTES lists (prefix, Router) pairs mounted under /api/."""

ROUTES: list = []
