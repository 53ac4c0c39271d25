"""The REST API root: /api/v1/…, OpenAPI at /api/openapi.json, docs at /api/docs.

Auth: `Authorization: Bearer <token>` (hashed API tokens with read or read-write scope) or
the UI session (with CSRF). Every error is JSON: {"code", "message", "field"}.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyCookie, HttpBearer

from clm.accounts.services import api_token_authenticate
from clm.core.errors import DomainError, PermissionDenied

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        api_token = api_token_authenticate(token)
        if api_token is None:
            return None
        if request.method not in SAFE_METHODS and not api_token.can_write():
            raise PermissionDenied("This API token is read-only.", code="token_read_only")
        request.user = api_token.user
        request.api_token = api_token
        return api_token.user


class SessionAuth(APIKeyCookie):
    """The UI's session cookie; CSRF is checked for writes."""

    param_name = "sessionid"

    def __init__(self) -> None:
        super().__init__(csrf=True)

    def authenticate(self, request: HttpRequest, key: str | None):
        if request.user.is_authenticated:
            return request.user
        return None


api = NinjaAPI(
    title="CLM API",
    version="1",
    description="Customer Lifecycle Management. Errors: {code, message, field}.",
    auth=[TokenAuth(), SessionAuth()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


@api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    return api.create_response(request, exc.as_dict(), status=exc.status)


@api.exception_handler(NinjaValidationError)
def _validation_error(request, exc: NinjaValidationError):
    errors = []
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", []) if p not in ("body", "query", "path", "payload")]
        errors.append({"field": ".".join(loc) or None, "message": err.get("msg", "Invalid.")})
    first = errors[0] if errors else {"field": None, "message": "Invalid input."}
    body = {"code": "invalid", "message": first["message"], "field": first["field"],
            "errors": errors}
    return api.create_response(request, body, status=422)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return api.create_response(
        request, {"code": "unauthenticated", "message": "Authentication required.", "field": None},
        status=401)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return api.create_response(request, {"code": "not_found", "message": "Not found.",
                                         "field": None}, status=404)


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    return api.create_response(request, {"code": "request_too_large", "field": "body",
                                         "message": "The request body is too large."},
                               status=413)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return api.create_response(request, {"code": "error", "message": str(exc), "field": None},
                               status=exc.status_code)


# Each module exposes ROUTES: [(prefix, Router)]; listed here so the API's shape is explicit.
API_MODULES = [
    "clm.customers.api",
    "clm.customers.api_imports",
    "clm.timeline.api",
    "clm.lifecycle.api",
    "clm.lifecycle.api_reports",
    "clm.analytics.api",
    "clm.segments.api",
    "clm.engagement.api",
    "clm.automation.api",
]


def _mount() -> None:
    from importlib import import_module

    for module_path in API_MODULES:
        for prefix, router in getattr(import_module(module_path), "ROUTES", []):
            api.add_router(prefix, router)


_mount()
