"""Errors with stable codes.

Every failure a client or CKAN can see is an :class:`HdxError` subclass. ``error_type`` is the stable
wire code of CONTRACTS.md (``file-too-large``, ``timeout``, ...); ``error_class`` on the wire is the
class name. One Flask error handler and one job wrapper turn these into the contract's failure bodies.

    HdxError                         unknown
    ├── BadRequest                   bad-request            (HTTP 400)
    ├── AccessDenied                 (a door refused the caller: entrances let it through unchanged)
    │   ├── Unauthorized             unauthorized           (HTTP 401)
    │   └── Forbidden                forbidden              (HTTP 403)
    ├── NotFound                     not-found              (HTTP 404)
    ├── ServiceUnavailable           service-unavailable    (HTTP 503)
    ├── ConfigurationError           wrong-configuration
    └── CkanError                    ckan-problem
        └── CkanUnavailable          ckan-unavailable       (retryable)

Slices add their own subclasses beside their code (``importapi.errors``...).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .retry import Retryable


class HdxError(Exception):
    """Base class: a failure with a stable code and a message safe to show a client."""

    error_type: ClassVar[str] = "unknown"
    http_status: ClassVar[int] = 500
    user_message: ClassVar[str] = "Unexpected error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.user_message
        self.details = details
        super().__init__(self.message)

    @property
    def error_class(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """The generic JSON error body of non-contract endpoints."""
        return {"error": self.message, "error_type": self.error_type, "error_class": self.error_class}


class BadRequest(HdxError):
    error_type = "bad-request"
    http_status = 400
    user_message = "Bad request"


class AccessDenied(HdxError):
    """The caller may not call this operation (core.auth)."""

    http_status = 403


class Unauthorized(AccessDenied):
    error_type = "unauthorized"
    http_status = 401
    user_message = "A valid admin token is required (Authorization: Bearer <token>)"


class Forbidden(AccessDenied):
    error_type = "forbidden"
    http_status = 403
    user_message = "Not allowed from this address"


class NotFound(HdxError):
    error_type = "not-found"
    http_status = 404
    user_message = "Not found"


class ServiceUnavailable(HdxError):
    error_type = "service-unavailable"
    http_status = 503
    user_message = "Service temporarily unavailable"


class ConfigurationError(HdxError):
    error_type = "wrong-configuration"
    user_message = "The service is not configured for this"


class CkanError(HdxError):
    """CKAN answered, but not with success."""

    error_type = "ckan-problem"
    http_status = 502
    user_message = "CKAN refused the call"


class CkanUnavailable(CkanError, Retryable):
    """CKAN could not be reached, timed out, or answered a retryable status (:mod:`core.retry`)."""

    error_type = "ckan-unavailable"
    user_message = "CKAN is unavailable"
