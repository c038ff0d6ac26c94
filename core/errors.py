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

What a client reads is a code and a message safe to show: an :class:`HdxError`'s own message, never the
text of another exception (a driver's or library's error names internal hosts, connection strings and
sometimes credentials). :func:`public_message` gives that message; :func:`redact_internals` cleans text
that must quote an outside program (ogr2ogr's first error line) before it is shown.
"""

from __future__ import annotations

import re
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


_CONNECTION_KEYS = "host|hostaddr|password|user|dbname|port|passfile|service|sslkey"
_INTERNALS = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(rf"\b({_CONNECTION_KEYS})\s*=\s*('(?:[^'\\]|\\.)*'|\S+)"), r"\1=***"),
    (re.compile(r'\bserver at "[^"]*"(?: \([^)]*\))?(?:, port \d+)?'), "server at <host>"),
    (re.compile(r'\bhost(?: name)? "[^"]*"(?: \([^)]*\))?'), "host <host>"),
    (re.compile(r"\b(connecting to|connect to|reach) [\w.-]+(?::\d+)?"), r"\1 <host>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"\bport \d+"), "port <port>"),
)
"""Connection strings, URLs, quoted host names and addresses, as libpq, redis-py and GDAL print them."""


def redact_internals(text: str) -> str:
    """``text`` with URLs, connection parameters, host names and IP addresses replaced by placeholders."""
    for pattern, replacement in _INTERNALS:
        text = pattern.sub(replacement, text)
    return text


def public_message(error: BaseException, what: str = "Unexpected error") -> str:
    """What a client may read about ``error``: an :class:`HdxError`'s message, else ``what`` and the
    exception's class (its text stays in the service's log)."""
    if isinstance(error, HdxError):
        return error.message
    return f"{what} ({type(error).__name__})"
