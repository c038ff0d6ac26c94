"""Access control: admin bearer tokens and allowed client networks."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app, request

from .errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from .settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    return current_app.extensions["hdx"].settings  # type: ignore[no-any-return]


def is_admin_request(settings: Settings) -> bool:
    """Whether the request carries one of the admin tokens as ``Authorization: Bearer <token>``."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and is_admin_token(settings, presented.strip())


def is_admin_token(settings: Settings, presented: str) -> bool:
    """Whether ``presented`` is one of the admin tokens (compared in constant time with each)."""
    if not presented:
        return False
    presented_bytes = presented.encode()
    matches = [hmac.compare_digest(presented_bytes, t.get_secret_value().encode()) for t in settings.admin_tokens]
    return any(matches)


def check_admin() -> None:
    """Raise :class:`Unauthorized` unless the request carries an admin token."""
    if not is_admin_request(_settings()):
        raise Unauthorized()


def check_allowed_network() -> None:
    """Raise :class:`Forbidden` when allowed networks are set and the client is outside them."""
    if not client_allowed(_settings(), request.remote_addr):
        raise Forbidden()


def client_allowed(settings: Settings, remote_addr: str | None) -> bool:
    """Whether a client at ``remote_addr`` may call the endpoints CKAN calls (``HDXRQ_ALLOWED_NETWORKS``)."""
    networks = settings.allowed_networks
    if not networks:
        return True
    try:
        client = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(net, strict=False) for net in networks)


def admin_required(view: F) -> F:
    """View decorator: admin token required."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_admin()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def notification_endpoint(view: F) -> F:
    """View decorator for endpoints CKAN calls: limited to ``HDXRQ_ALLOWED_NETWORKS`` when set."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_allowed_network()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
