"""API of the analytics app: ROUTES lists (prefix, Router) pairs mounted under /api/."""

ROUTES: list = []
