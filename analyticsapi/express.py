"""The express lane of ``POST /api/send-analytics``: the usual request answered before Flask's dispatch.

CKAN posts an event for every download, login and API call, so this is the busiest endpoint by far, and
its own work (validate, one Redis round trip) is smaller than Flask's per-request machinery around it
(request context, URL matching, hooks, response object): measured under uWSGI at 500 requests/s, 1.37 ms
of CPU per request through Flask, 0.93 ms through this lane (docs/analyticsapi.md). The usual answer,
``{"success": true}``, is sent as bytes built once, with the headers Flask would give it.

The lane takes a request only when nothing about it is unusual: ``POST`` to exactly that path, a JSON
content type, a ``Content-Length`` within ``HDXRQ_MAX_REQUEST_MB``, a client ``HDXRQ_ALLOWED_NETWORKS``
lets in (or an admin token: the door's declaration of who may call, :func:`analyticsapi.service.accept_event`,
decides). It parses the body with the app's JSON provider and answers with that door operation, as the
Flask view does, so both give the same answers, errors included. Every other request
(and its body, already read or not) goes on to Flask as if the lane were not there.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.wsgi import ClosingIterator

from core.auth import Caller, access_of, allows
from core.metrics import observe_request

from . import service

if TYPE_CHECKING:
    from flask import Flask

    from core.runtime import Runtime

PATH = "/api/send-analytics"
SUCCESS = {"success": True}
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def install(app: Flask) -> None:
    """Put the lane in front of the app's WSGI callable."""
    app.wsgi_app = ExpressLane(app, app.wsgi_app)  # type: ignore[method-assign]


class ExpressLane:
    """WSGI middleware: answers the usual send-analytics request itself, hands everything else to ``inner``."""

    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        self.app = app
        self.inner = inner
        usual = app.json.response(SUCCESS)  # the usual answer, exactly as Flask sends it, built once
        self.success = usual.get_data()
        self.success_headers = list(usual.headers.items())
        self.access = access_of(service.accept_event)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.inner(environ, start_response)
        started = time.perf_counter()
        runtime: Runtime = self.app.extensions["hdx"]
        length = _content_length(environ)
        caller = Caller.from_environ(runtime.settings, environ)
        if not (
            length is not None
            and length <= runtime.settings.api.max_request_mb * 1024 * 1024
            and _is_json(environ.get("CONTENT_TYPE", ""))
            and allows(runtime.settings, self.access, caller)
        ):
            return self.inner(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) != length:  # the client went away mid-body: Flask reports it as it always has
            environ["wsgi.input"] = io.BytesIO(body)
            return self.inner(environ, start_response)
        answer = service.accept_event(runtime, caller, self._parse(body))
        after = (lambda: service.request_drain(runtime)) if answer.request_drain else None
        if answer.status == 200 and answer.body == SUCCESS:
            start_response("200 OK", self.success_headers)
            reply: Iterable[bytes] = ClosingIterator([self.success], after)  # after: once it was sent
        else:
            response = self.app.json.response(answer.body)
            response.status_code = answer.status
            if after is not None:
                response.call_on_close(after)
            reply = response(environ, start_response)
        observe_request(self.app, PATH, "POST", answer.status, time.perf_counter() - started)
        return reply

    def _parse(self, body: bytes) -> Any:
        """The body as ``request.get_json(silent=True)`` reads it: None when it is not JSON."""
        try:
            return self.app.json.loads(body)
        except ValueError:  # invalid JSON or UTF-8, nested too deeply
            return None


def _content_length(environ: dict[str, Any]) -> int | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _is_json(content_type: str) -> bool:
    """Werkzeug's ``Request.is_json`` for a Content-Type header."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))
