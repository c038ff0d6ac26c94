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
    return jsonify(version=__version__)


@bp.get("/api/run-checks")
def checks() -> ResponseReturnValue:
    return jsonify(result=run_checks(current_app._get_current_object()))  # type: ignore[attr-defined]


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Redis, the stream Redis and PostGIS are reachable."""
    results = run_checks(current_app._get_current_object(), readiness_only=True)  # type: ignore[attr-defined]
    ready = all(item["result"] == "Passed" for item in results)
    return jsonify(status="ok" if ready else "unavailable", checks=results), 200 if ready else 503
