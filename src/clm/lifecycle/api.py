"""API of the lifecycle app: ROUTES lists (prefix, Router) pairs mounted under /api/."""

ROUTES: list = []
