"""`Idempotency-Key` for API writes: a retried request gets the first answer, not a duplicate.

A client sends the same `Idempotency-Key` header with each retry of a POST/PUT/PATCH/DELETE
under /api/. The first request runs; its answer (if not a 5xx) is stored per caller and key
and replayed to retries with `Idempotent-Replayed: true`. The same key with a different
request body is refused (422); a retry while the first is still running gets 409.

A multipart upload (a CSV import) is compared by its parsed fields and files, read in
chunks from Django's upload handlers, so a file larger than DATA_UPLOAD_MAX_MEMORY_SIZE is
never held in memory whole; any other body over that size is a 413.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone

from clm.core.models import IdempotencyRecord

HEADER = "HTTP_IDEMPOTENCY_KEY"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 200


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "field": "Idempotency-Key"},
                        status=status)


def _caller_hash(request: HttpRequest) -> str:
    """Who is asking: the bearer token or the session (keys are private to a caller)."""
    from django.conf import settings

    credential = (request.META.get("HTTP_AUTHORIZATION")
                  or request.COOKIES.get(settings.SESSION_COOKIE_NAME, ""))
    return hashlib.sha256(credential.encode()).hexdigest()


def _request_hash(request: HttpRequest) -> str:
    digest = hashlib.sha256(
        f"{request.method} {request.path}?{request.META.get('QUERY_STRING', '')}\n".encode())
    if not request.content_type.startswith("multipart/form-data"):
        digest.update(request.body)
        return digest.hexdigest()
    # Lengths before values: no two different requests give the same stream of bytes.
    for name, values in sorted(request.POST.lists()):
        for value in [name, *values]:
            data = value.encode()
            digest.update(b"f%d:" % len(data) + data)
    for name, files in sorted(request.FILES.lists()):
        for upload in files:
            for value in (name, upload.name or ""):
                data = value.encode()
                digest.update(b"u%d:" % len(data) + data)
            digest.update(b"%d:" % upload.size)
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)  # the view reads it from the start
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.META.get(HEADER)
        if key is None or request.method not in WRITE_METHODS or \
                not request.path.startswith("/api/"):
            return self.get_response(request)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            return _error(400, "invalid_idempotency_key",
                          f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
        if "\x00" in key:  # PostgreSQL text cannot hold it
            return _error(400, "invalid_idempotency_key",
                          "Idempotency-Key contains a NUL character.")
        try:
            request_hash = _request_hash(request)
        except RequestDataTooBig:
            return JsonResponse({"code": "request_too_large", "field": "body",
                                 "message": "The request body is too large."}, status=413)
        except MultiPartParserError as exc:
            return JsonResponse({"code": "invalid_body", "field": "body",
                                 "message": f"The multipart body cannot be read: {exc}"},
                                status=400)
        caller = _caller_hash(request)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    caller_hash=caller, key=key, request_hash=request_hash,
                    created_at=timezone.now())
        except IntegrityError:
            return self._replay(caller, key, request_hash)
        response = self.get_response(request)
        if response.status_code >= 500 or response.streaming:
            # Nothing to replay: let a retry run again.
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            return response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            status_code=response.status_code,
            content_type=response.get("Content-Type", ""),
            body=response.content.decode("utf-8", errors="replace"))
        return response

    def _replay(self, caller: str, key: str, request_hash: str) -> HttpResponse:
        record = IdempotencyRecord.objects.filter(caller_hash=caller, key=key).first()
        if record is None:  # deleted after a 5xx in the meantime
            return _error(409, "request_in_progress", "Retry this request.")
        if record.request_hash != request_hash:
            return _error(422, "idempotency_key_reused",
                          "This Idempotency-Key was used for a different request.")
        if record.status_code == 0:
            return _error(409, "request_in_progress",
                          "A request with this Idempotency-Key is still being processed.")
        response = HttpResponse(record.body, status=record.status_code,
                                content_type=record.content_type or "application/json")
        response["Idempotent-Replayed"] = "true"
        return response


def idempotency_prune(*, older_than_hours: int = 48) -> int:
    """Forget stored answers older than the retry window; returns how many."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


__all__ = ["IdempotencyMiddleware", "idempotency_prune"]
