"""API of the engagement app (mounted under PREFIX when a router exists)."""

PREFIX = None
router = None
