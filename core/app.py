"""The application factory."""

from __future__ import annotations

import gc
import logging
from typing import Any

from flask import Flask, Response, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from . import metrics, monitor, openapi, system
from .checks import CORE_CHECKS, register_check
from .errors import HdxError
from .runtime import Runtime
from .settings import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024


class BoundedJsonProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply to parse is invalid JSON (a 400), not a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the API: connections (lazy), blueprints of every slice, checks and error handlers."""
    runtime = runtime or Runtime(settings or Settings.from_env())
    app = Flask("hdxrq")
    app.json = BoundedJsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_request_mb * MB
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["hdx"] = runtime

    for check in CORE_CHECKS:
        register_check(app, check)
    app.register_blueprint(system.bp)
    _register_slices(app)
    monitor.init_app(app, runtime)
    metrics.init_app(app, runtime)
    openapi.init_app(app)
    _register_error_handlers(app)
    return app


def create_prefork_app() -> Flask:
    """:func:`create_app` for a server that builds the app once and then forks its processes (uWSGI
    under ``./hdxrq.py serve``).

    Everything built by then lives as long as the process, so it is moved out of the garbage collector's
    sight (``gc.freeze``): a full collection no longer walks the loaded modules (about 90 ms per process,
    a stall every request on that process waited for), and the pages stay shared between the processes.
    """
    app = create_app()
    gc.freeze()
    return app


def _register_slices(app: Flask) -> None:
    from analyticsapi import api as analytics
    from eventsapi import api as events
    from importapi import api as imports
    from processes import api as processes
    from scheduler import api as scheduler
    from tiles import api as tiles

    for slice_api in (imports, analytics, events, scheduler, tiles, processes):
        app.register_blueprint(slice_api.bp)
        init = getattr(slice_api, "init_app", None)
        if init is not None:
            init(app)


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HdxError)
    def hdx_error(error: HdxError) -> tuple[Response, int]:
        return jsonify(error.to_dict()), error.http_status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        body: dict[str, Any] = {"error": error.description, "error_type": _http_error_type(error)}
        response = jsonify(body)
        for name, value in error.get_headers():  # Allow on 405, Retry-After, WWW-Authenticate...
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return jsonify(error="Internal server error", error_type="unknown"), 500


def _http_error_type(error: HTTPException) -> str:
    return (error.name or "error").lower().replace(" ", "-")
