"""Service endpoints: version, checks, health and readiness."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from .checks import run_checks
from .version import __version__

bp = Blueprint("system", __name__)


@bp.get("/version")
@bp.get("/about")
def version() -> ResponseReturnValue:
    """The service's version.

    Answers `{"version": "<semver>"}`; `GET /about` answers the same.
    """
    return jsonify(version=__version__)


@bp.get("/api/run-checks")
def checks() -> ResponseReturnValue:
    """Run the service checks (CKAN's service checker shows them).

    Answers `{"result": [...]}`, one item per check (Redis, the event stream, PostGIS, the queues and each
    part's own checks): `name`, `type`, `description`, `result` (`"Passed"` or `"Failed"`),
    `error_message` and `subchecks`.
    """
    return jsonify(result=run_checks(current_app._get_current_object()))  # type: ignore[attr-defined]


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Whether the process is alive.

    Answers `{"status": "ok"}` without asking Redis or PostGIS: for liveness probes.
    """
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Whether Redis, the stream Redis and PostGIS are reachable.

    200 `{"status": "ok", "checks": [...]}` when they all answer, 503 with `"status": "unavailable"`
    otherwise: for readiness probes and load balancers.
    """
    results = run_checks(current_app._get_current_object(), readiness_only=True)  # type: ignore[attr-defined]
    ready = all(item["result"] == "Passed" for item in results)
    return jsonify(status="ok" if ready else "unavailable", checks=results), 200 if ready else 503
