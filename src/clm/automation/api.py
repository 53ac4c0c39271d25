"""API of the automation app: ROUTES lists (prefix, Router) pairs mounted under /api/."""

ROUTES: list = []
