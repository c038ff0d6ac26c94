"""HTTP endpoints of the analyticsapi slice: ``POST /api/send-analytics`` (CONTRACTS.md §2.5)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from core.auth import Caller, access_of, authorize
from core.checks import Check, register_check
from core.metrics import register_metric_source

from . import buffer, service
from .metrics import buffer_metrics

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger(__name__)

bp = Blueprint("analyticsapi", __name__)


@bp.post("/api/send-analytics")
def send_analytics() -> tuple[Response, int]:
    """Record an analytics event for Mixpanel and Google Analytics 4.

    CKAN sends it with a 2-second timeout, so the event is only checked and buffered here; workers deliver
    the buffered events in batches.

    * Body: `event_name`, `mixpanel_meta`, `ga_meta`, `mixpanel_tracking_id`, `mixpanel_token`,
      `send_mixpanel`, `send_ga`.
    * Answers `{"success": true}`; a body that is not JSON, lacks a required field or is too large gets a 4xx
      status with `{"success": false, "error": <message>}`.
    \f
    Most requests never get here: analyticsapi.express answers the usual ones before Flask, through the
    same door. This view answers the rest (a body too large, not JSON, a refused client).
    """
    runtime: Runtime = current_app.extensions["hdx"]
    caller = Caller.from_request()
    authorize(runtime.settings, access_of(service.accept_event), caller)  # before reading a refused client's body
    try:
        payload = request.get_json(silent=True)
    except RequestEntityTooLarge:
        answer = service.failure(f"The request body is larger than {runtime.settings.api.max_request_mb} MB", 413)
    else:
        answer = service.accept_event(runtime, caller, payload)
    response = jsonify(answer.body)
    if answer.request_drain:
        response.call_on_close(lambda: service.request_drain(runtime))
    return response, answer.status


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
