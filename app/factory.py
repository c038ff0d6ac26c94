"""The application factory."""

from __future__ import annotations

import gc
import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from core import finite, metrics, monitor, openapi, registry, system
from core.checks import CORE_CHECKS, register_check
from core.errors import HdxError
from core.runtime import Runtime

from .settings import Settings
from .slices import compose

log = logging.getLogger(__name__)

MB = 1024 * 1024


class BoundedJsonProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply to parse, or holding NaN or Infinity
    (:mod:`core.finite`), is invalid JSON (a 400), not a 500 or a value no one downstream can read."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return finite.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the API: connections (lazy), blueprints of every slice, checks and error handlers."""
    runtime = runtime or Runtime(settings or Settings.from_env())
    app = Flask("hdxrq")
    app.json = BoundedJsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.api.max_request_mb * MB
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["hdx"] = runtime

    for check in CORE_CHECKS:
        register_check(app, check)
    app.register_blueprint(system.bp)
    _register_slices(app, registry.install(compose(runtime.settings)))
    monitor.init_app(app, runtime)
    metrics.init_app(app, runtime)
    openapi.init_app(app)
    _register_error_handlers(app)
    app.after_request(_drain_unread_body)
    return app


OVERSIZE_DRAIN_FACTOR = 4
"""A body over ``HDXRQ_MAX_REQUEST_MB`` but within this many times it is read and dropped after the refusal,
so the client gets the answer; a larger one is not worth reading and its connection is dropped."""
DRAIN_CHUNK = 1024 * 1024


def _drain_unread_body(response: Response) -> Response:
    """Read the rest of a body the view did not read (a 405, a 401, a 413...), so the client gets the
    answer and the connection stays usable: the server drops a keep-alive connection with unread bytes
    on it, and a client still sending sees a reset instead of the answer."""
    length = request.content_length or 0
    limit = current_app.config["MAX_CONTENT_LENGTH"] or 0
    if not 0 < length <= limit * OVERSIZE_DRAIN_FACTOR:
        return response
    try:
        if length <= limit:
            stream = request.stream
            if not getattr(stream, "is_exhausted", True):
                stream.exhaust()  # type: ignore[attr-defined]
        else:  # refused unread: werkzeug will not open the stream, so read the raw input
            raw, left = request.environ["wsgi.input"], length
            while left > 0 and (chunk := raw.read(min(left, DRAIN_CHUNK))):
                left -= len(chunk)
    except Exception:  # the client went away: nothing to keep alive
        log.debug("could not drain an unread request body", exc_info=True)
    return response


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


def _register_slices(app: Flask, slices: registry.Registry) -> None:
    for blueprint, setup in slices.blueprints:
        app.register_blueprint(blueprint)
        if setup is not None:
            setup(app)


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
