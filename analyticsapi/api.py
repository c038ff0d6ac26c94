"""HTTP endpoints of the analyticsapi slice: ``POST /api/send-analytics`` (CONTRACTS.md §2.5)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from core.auth import notification_endpoint
from core.checks import Check, register_check
from core.metrics import register_metric_source

from . import buffer, drain
from .errors import AnalyticsBufferUnavailable, InvalidAnalyticsEvent
from .events import AnalyticsEvent, parse_event
from .metrics import buffer_metrics

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger(__name__)

bp = Blueprint("analyticsapi", __name__)


@bp.post("/api/send-analytics")
@notification_endpoint
def send_analytics() -> tuple[Response, int]:
    """Validate the event, buffer it in one Redis round trip and answer; delivery happens in the workers.

    Most requests never get here: :mod:`analyticsapi.express` answers the usual ones before Flask, with
    :func:`accept` as well. This view answers the rest (a body too large, not JSON, a refused client).
    """
    runtime: Runtime = current_app.extensions["hdx"]
    try:
        payload = request.get_json(silent=True)
        answer = accept(payload, runtime)
    except RequestEntityTooLarge:
        answer = _failure(f"The request body is larger than {runtime.settings.max_request_mb} MB", 413)
    response = jsonify(answer.body)
    if answer.request_drain:
        response.call_on_close(lambda: enqueue_drain(runtime))
    return response, answer.status


@dataclass(frozen=True)
class Answer:
    """What send-analytics answers: HTTP status, JSON body, and whether to enqueue a drain afterwards."""

    status: int
    body: dict[str, Any]
    request_drain: bool = False


def accept(payload: Any, runtime: Runtime) -> Answer:
    """Validate a parsed body (None when it was not JSON) and buffer its event: the endpoint's whole job."""
    try:
        event = _deliverable(parse_event(payload), runtime)
        must_request_drain = drain.append(runtime.redis, event) if event.mixpanel or event.ga4 else False
    except InvalidAnalyticsEvent as error:
        return _failure(error.message, error.http_status)
    except RedisError as error:
        log.error("analytics event not buffered: %s", type(error).__name__)
        unavailable = AnalyticsBufferUnavailable()
        return _failure(unavailable.message, unavailable.http_status)
    return Answer(200, {"success": True}, must_request_drain)


def _deliverable(event: AnalyticsEvent, runtime: Runtime) -> AnalyticsEvent:
    """Without GA4 credentials there is nowhere to send GA hits: they are not buffered (and counted as such)."""
    settings = runtime.settings
    if event.ga4 is not None and not (settings.ga4_measurement_id and settings.ga4_api_secret):
        log.debug("GA4 is not configured (GA4_MEASUREMENT_ID, GA4_API_SECRET): GA hit not buffered")
        return replace(event, ga4=None)
    return event


def _failure(message: str, status: int) -> Answer:
    return Answer(status, {"success": False, "error": message})


def enqueue_drain(runtime: Runtime) -> None:
    """Runs after the response went out; a failure here only delays delivery until the flag expires."""
    try:
        drain.enqueue_drain(runtime.redis, runtime.settings)
    except Exception:  # the event is buffered: the next request, a tick or a worker start drains it
        log.exception("could not enqueue the analytics drain")


def _buffer_check(runtime: Runtime) -> None:
    for sink in buffer.SINKS:
        buffer.SinkBuffer(runtime.redis, sink).backlog()


def init_app(app: Flask) -> None:
    """Register the express lane, the analytics buffer check and metrics."""
    from .express import install

    install(app)
    register_metric_source(app, buffer_metrics)
    register_check(
        app,
        Check(
            name="Analytics buffer",
            type="redis",
            description="The Redis streams buffering analytics events are readable",
            run=_buffer_check,
        ),
    )
