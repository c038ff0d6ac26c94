"""Service checks for ``GET /api/run-checks`` (CKAN's service checker) and ``/readyz``.

A check is a function of the runtime that raises when something is wrong. Slices add their own with
:func:`register_check` from their ``init_app``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask

from .errors import HdxError, public_message, redact_internals
from .logging import mask_secrets

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

CheckFunction = Callable[["Runtime"], None]


@dataclass(frozen=True)
class Check:
    name: str
    type: str
    description: str
    run: CheckFunction
    readiness: bool = False
    subchecks: list[Any] = field(default_factory=list)


def register_check(app: Flask, check: Check) -> None:
    app.extensions.setdefault("hdx.checks", []).append(check)


def run_checks(app: Flask, *, readiness_only: bool = False) -> list[dict[str, Any]]:
    """Run the registered checks and return them in the contract's shape."""
    runtime = app.extensions["hdx"]
    results = []
    for check in app.extensions.get("hdx.checks", []):
        if readiness_only and not check.readiness:
            continue
        try:
            check.run(runtime)
            outcome, message = "Passed", ""
        except Exception as error:  # a check reports any failure, it never raises
            outcome = "Failed"
            message = failure_message(check, error)
            detail = mask_secrets(f"{type(error).__name__}: {error}"[:500], runtime.settings.secret_values())
            log.warning("check %s failed: %s", check.name, detail)  # the details stay in the log
        results.append(
            {
                "name": check.name,
                "type": check.type,
                "description": check.description,
                "result": outcome,
                "error_message": message,
                "subchecks": list(check.subchecks),
            }
        )
    return results


def failure_message(check: Check, error: Exception) -> str:
    """``<code>: <safe message>`` for a failed check: the code of our error, or ``<type>-unavailable``;
    never the library's text, which names internal hosts and connection strings."""
    if isinstance(error, HdxError):
        return f"{error.error_type}: {redact_internals(error.message)}"[:500]
    return f"{check.type}-unavailable: {public_message(error, check.name + ' failed')}"


def _redis(runtime: Runtime) -> None:
    runtime.redis.ping()


def _stream_redis(runtime: Runtime) -> None:
    runtime.stream_redis.ping()


def _postgis(runtime: Runtime) -> None:
    with runtime.postgis.connection() as conn:
        conn.execute("SELECT postgis_version()").fetchone()


def _ckan(runtime: Runtime) -> None:
    from .errors import CkanError

    response = runtime.ckan.call("status_show", token=None, method="GET")
    if not response.is_success:
        raise CkanError(f"status_show answered HTTP {response.status_code}")


CORE_CHECKS = (
    Check("Redis connection", "redis", "Checks the RQ Redis answers PING", _redis, readiness=True),
    Check("Event stream Redis", "redis", "Checks the event-bus Redis answers PING", _stream_redis, readiness=True),
    Check("PostGIS connection", "database", "Checks PostGIS answers postgis_version()", _postgis, readiness=True),
    Check("CKAN API", "http", "Checks CKAN answers status_show", _ckan),
)
