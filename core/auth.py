"""Who may call what: callers, the three kinds of access, and the check every door makes.

An entrance (CKAN's endpoint, the OGC execution, the command line) describes its :class:`Caller`: the
client's address and which token it presented (an admin or a notifier token), or the local operator. It
never decides. Each door operation declares once who may call it, with :func:`operation` and one
:class:`Access`, and :func:`authorize` applies that to whichever entrance the call came through (docs/access.md).
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
    from pydantic import SecretStr

    from .settings import CoreSettings

F = TypeVar("F", bound=Callable[..., Any])
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Access(StrEnum):
    """Who may call an operation."""

    ANYONE = "anyone"
    NOTIFIER = "allowed networks or notifier token"
    """What CKAN's notifications need: a client in ``HDXRQ_ALLOWED_NETWORKS`` (everyone when it is empty),
    or a notifier token (``HDXRQ_NOTIFIER_TOKENS``) or the admin token from anywhere."""
    ADMIN = "admin token"


@dataclass(frozen=True)
class Caller:
    """Who is asking. ``operator`` is the local command line, trusted with every operation."""

    remote_addr: str | None = None
    admin: bool = False
    notifier: bool = False
    """Presented a notifier token: CKAN's notifications from anywhere, nothing more."""
    operator: bool = False

    @classmethod
    def from_environ(cls, settings: CoreSettings, environ: Mapping[str, Any]) -> Caller:
        """The caller of a WSGI request: its client address and which token it carries."""
        presented = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        admin = is_admin_token(settings, presented)
        notifier = not admin and _is_one_of(settings.access.notifier_tokens, presented)
        return cls(remote_addr=environ.get("REMOTE_ADDR"), admin=admin, notifier=notifier)

    @classmethod
    def from_request(cls) -> Caller:
        """The caller of the current Flask request."""
        return cls.from_environ(current_app.extensions["hdx"].settings, request.environ)


OPERATOR = Caller(operator=True)
"""The person at the command line of a machine that has the service's settings."""


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value; empty for any other value."""
    scheme, _, presented = authorization.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def is_admin_request(settings: CoreSettings) -> bool:
    """Whether the current Flask request carries one of the admin tokens as ``Authorization: Bearer``."""
    return is_admin_token(settings, bearer_token(request.headers.get("Authorization", "")))


def is_admin_token(settings: CoreSettings, presented: str) -> bool:
    """Whether ``presented`` is one of the admin tokens (compared in constant time with each)."""
    return _is_one_of(settings.access.admin_tokens, presented)


def _is_one_of(tokens: tuple[SecretStr, ...], presented: str) -> bool:
    if not presented:
        return False
    presented_bytes = presented.encode()
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
    return access is Access.NOTIFIER and (caller.notifier or client_allowed(settings, caller.remote_addr))


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
