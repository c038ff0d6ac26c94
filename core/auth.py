"""Who may call what: callers, the three kinds of access, and the check every door makes.

An entrance (CKAN's endpoint, the OGC execution, the command line) describes its :class:`Caller`: the
client's address and whether it presented an admin token, or the local operator. It never decides. Each
door operation declares once who may call it, with :func:`operation` and one :class:`Access`, and
:func:`authorize` applies that to whichever entrance the call came through (docs/access.md).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app, request

from .errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from .settings import CoreSettings

F = TypeVar("F", bound=Callable[..., Any])
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Access(StrEnum):
    """Who may call an operation."""

    ANYONE = "anyone"
    NOTIFIER = "allowed networks or admin token"
    """What CKAN's notifications need: a client in ``HDXRQ_ALLOWED_NETWORKS`` (everyone when it is empty),
    or the admin token from anywhere."""
    ADMIN = "admin token"


@dataclass(frozen=True)
class Caller:
    """Who is asking. ``operator`` is the local command line, trusted with every operation."""

    remote_addr: str | None = None
    admin: bool = False
    operator: bool = False

    @classmethod
    def from_environ(cls, settings: CoreSettings, environ: Mapping[str, Any]) -> Caller:
        """The caller of a WSGI request: its client address and whether it carries an admin token."""
        token = admin_token_presented(settings, environ.get("HTTP_AUTHORIZATION", ""))
        return cls(remote_addr=environ.get("REMOTE_ADDR"), admin=token)

    @classmethod
    def from_request(cls) -> Caller:
        """The caller of the current Flask request."""
        return cls.from_environ(current_app.extensions["hdx"].settings, request.environ)


OPERATOR = Caller(operator=True)
"""The person at the command line of a machine that has the service's settings."""


def admin_token_presented(settings: CoreSettings, authorization: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <one of the admin tokens>``."""
    scheme, _, presented = authorization.partition(" ")
    return scheme.lower() == "bearer" and is_admin_token(settings, presented.strip())


def is_admin_request(settings: CoreSettings) -> bool:
    """Whether the current Flask request carries one of the admin tokens as ``Authorization: Bearer``."""
    return admin_token_presented(settings, request.headers.get("Authorization", ""))


def is_admin_token(settings: CoreSettings, presented: str) -> bool:
    """Whether ``presented`` is one of the admin tokens (compared in constant time with each)."""
    if not presented:
        return False
    presented_bytes = presented.encode()
    tokens = settings.access.admin_tokens
    matches = [hmac.compare_digest(presented_bytes, token.get_secret_value().encode()) for token in tokens]
    return any(matches)


def client_allowed(settings: CoreSettings, remote_addr: str | None) -> bool:
    """Whether a client at ``remote_addr`` is in ``HDXRQ_ALLOWED_NETWORKS`` (everyone when it is empty)."""
    if not settings.access.allowed_networks:
        return True
    try:
        client = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(client in network for network in _networks(settings.access.allowed_networks))


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)  # validated with the settings


def allows(settings: CoreSettings, access: Access, caller: Caller) -> bool:
    """Whether ``caller`` may call an operation that needs ``access``."""
    if caller.operator or access is Access.ANYONE or caller.admin:
        return True
    return access is Access.NOTIFIER and client_allowed(settings, caller.remote_addr)


def authorize(settings: CoreSettings, access: Access, caller: Caller) -> None:
    """Raise :class:`Unauthorized` (admin token needed) or :class:`Forbidden` (address not allowed)."""
    if allows(settings, access, caller):
        return
    if access is Access.ADMIN:
        raise Unauthorized()
    raise Forbidden()


def operation(access: Access) -> Callable[[F], F]:
    """Declare a door operation ``f(rt, caller, ...)`` and who may call it; every call is authorized.

    The declaration stays on the function (``f.access``), so an entrance that must decide before calling
    (the send-analytics express lane) asks :func:`allows` with the same declaration.
    """

    def declare(function: F) -> F:
        @wraps(function)
        def authorized(rt: Any, caller: Caller, *args: Any, **kwargs: Any) -> Any:
            authorize(rt.settings, access, caller)
            return function(rt, caller, *args, **kwargs)

        authorized.access = access  # type: ignore[attr-defined]
        return authorized  # type: ignore[return-value]

    return declare


def access_of(function: Callable[..., Any]) -> Access:
    """Who may call a door operation (what it declared with :func:`operation`)."""
    access = getattr(function, "access", None)
    if not isinstance(access, Access):
        raise TypeError(f"{function.__qualname__} is not a door operation")
    return access


def check_admin() -> None:
    """Raise :class:`Unauthorized` unless the current request carries an admin token."""
    authorize(current_app.extensions["hdx"].settings, Access.ADMIN, Caller.from_request())
