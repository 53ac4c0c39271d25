"""Events API, including the idempotent bulk ingest (built out in the API work)."""

from ninja import Router

events_router = Router(tags=["events"])

ROUTES = [("/v1/events", events_router)]
