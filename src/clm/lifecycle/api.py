"""API of the lifecycle app (mounted under PREFIX when a router exists)."""

PREFIX = None
router = None
