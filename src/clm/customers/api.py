"""Contacts, companies and property definitions API (built out in the API work)."""

from ninja import Router

contacts_router = Router(tags=["contacts"])
companies_router = Router(tags=["companies"])
properties_router = Router(tags=["properties"])

ROUTES = [
    ("/v1/contacts", contacts_router),
    ("/v1/companies", companies_router),
    ("/v1/properties", properties_router),
]
