"""Refuse NUL characters in query strings before any view runs (headers: see idempotency).

PostgreSQL text cannot hold NUL (it raises, a 500), SQLite silently truncates at it, and no
real search, filter or id contains one. One check here covers every page and API endpoint
rather than one per view.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse


class RefuseNulMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in v for v in values):
                field = name.replace("\x00", "")
                message = f"The query parameter “{field}” contains a NUL character."
                if request.path.startswith("/api/"):
                    # 422 like every other invalid API parameter (ninja's validation errors).
                    return JsonResponse({"code": "invalid", "message": message, "field": field},
                                        status=422)
                return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
