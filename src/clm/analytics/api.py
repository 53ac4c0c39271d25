"""API of the analytics app (mounted under PREFIX when a router exists)."""

PREFIX = None
router = None
