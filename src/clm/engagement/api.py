"""API of the engagement app: ROUTES lists (prefix, Router) pairs mounted under /api/."""

ROUTES: list = []
