"""One error type for services, API and views: a stable code, the field at fault, a message."""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses. `status` is the HTTP status the API maps it to."""

    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        field: str | None = None,
        status: int | None = None,
        errors: list[dict] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        if status is not None:
            self.status = status
        self.errors = errors or []

    def as_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message, "field": self.field}
        if self.errors:
            body["errors"] = self.errors
        return body


class ValidationFailed(DomainError):
    status = 422

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid",
                 errors: list[dict] | None = None) -> None:
        super().__init__(message, code=code, field=field, errors=errors)


class NotFound(DomainError):
    status = 404

    def __init__(self, message: str = "Not found.", *, code: str = "not_found") -> None:
        super().__init__(message, code=code)


class PermissionDenied(DomainError):
    status = 403

    def __init__(self, message: str = "You do not have permission to do this.",
                 *, code: str = "forbidden") -> None:
        super().__init__(message, code=code)


class Conflict(DomainError):
    status = 409

    def __init__(self, message: str, *, code: str = "conflict", field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)


def django_validation_to_domain(exc) -> ValidationFailed:
    """Turn a django.core.exceptions.ValidationError into a ValidationFailed naming the field."""
    errors: list[dict] = []
    if hasattr(exc, "error_dict"):
        for field, field_errors in exc.error_dict.items():
            for err in field_errors:
                errors.append({"field": None if field == "__all__" else field,
                               "message": " ".join(err.messages)})
    else:
        errors = [{"field": None, "message": m} for m in exc.messages]
    first = errors[0] if errors else {"field": None, "message": "Invalid input."}
    return ValidationFailed(first["message"], field=first["field"], errors=errors)
