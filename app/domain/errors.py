"""One hierarchy of domain errors with user-safe messages, mapped to HTTP codes at the edge."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a business rule was broken. ``status`` is the HTTP code the API returns."""

    status = 422

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}

    def to_dict(self) -> dict:
        return {"message": self.message, "errors": self.errors}


class ValidationError(DomainError):
    """Input is malformed or breaks a validation rule (422)."""

    status = 422


class NotFound(DomainError):
    """The thing asked for does not exist (404)."""

    status = 404


class Forbidden(DomainError):
    """The user may not do this: role, four-eyes or stop (403)."""

    status = 403


class Conflict(DomainError):
    """A concurrent change or a duplicate won (409)."""

    status = 409


class ConfigurationError(RuntimeError):
    """The application is configured unsafely and refuses to start."""
