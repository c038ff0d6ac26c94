"""HTTP endpoints of the eventsapi slice: change events (§2.7) and file-structure checks (§2.6).

CKAN fails the user's save on a non-2xx answer, so both endpoints answer 200 with a failure body for
anything they cannot accept; the work itself happens in workers.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from core.auth import Caller, access_of, authorize
from core.errors import AccessDenied, HdxError
from core.metrics import register_metric_source
from core.runtime import Runtime

from . import service
from .errors import EventRequestError, FsCheckRequestError
from .metrics import fs_check_callbacks_pending, stream_metrics

log = logging.getLogger(__name__)

bp = Blueprint("eventsapi", __name__)

QUEUE_DOWN_MESSAGE = "The job queue is unavailable; the request was not queued"


def _runtime() -> Runtime:
    return current_app.extensions["hdx"]  # type: ignore[no-any-return]


def _read_body() -> bytes:
    try:
        return request.get_data(cache=False)
    except HTTPException as error:  # too large, client went away...
        raise EventRequestError(f"The request body could not be read ({error.name})") from None


@bp.post("/api/create-change-events")
def create_change_events() -> Response:
    """Publish the changes of one CKAN dataset write as events.

    CKAN calls this after every dataset write, and a non-2xx answer would fail the user's save: every refusal
    is a 200 with `{"state": "failure", "message": <text>}`.

    * Body: `username`, `old_dataset_dict` (`{}` on create) and `new_dataset_dict`.
    * Answers `{"state": "success"}` once the request is queued; a worker compares the two dicts and writes
      the events (`dataset-created`, `resource-data-changed`, ...) to the Redis stream `hdx_event_stream`.
    """
    rt, caller = _runtime(), Caller.from_request()
    authorize(rt.settings, access_of(service.accept_change_events), caller)  # before reading a refused body
    try:
        service.accept_change_events(rt, caller, _read_body())
    except AccessDenied:
        raise
    except HdxError as error:
        return jsonify(state="failure", message=error.message)
    except RedisError as error:
        log.error("create-change-events: %s: %s", QUEUE_DOWN_MESSAGE, type(error).__name__)
        return jsonify(state="failure", message=QUEUE_DOWN_MESSAGE)
    except Exception:  # a 500 would fail the user's save in CKAN: answer in the contract's shape
        log.exception("create-change-events: unexpected error")
        return jsonify(state="failure", message="Unexpected error; the request was not queued")
    return jsonify(state="success")


@bp.post("/api/file-structure-check/dataset/<dataset_id>/resource/<resource_id>")
def file_structure_check(dataset_id: str, resource_id: str) -> Response:
    """Check a spreadsheet's sheets against its last successful check.

    * Body: `hxl_proxy_source_info_url` and `fs_check_info` (the resource's check history, a JSON string).
    * Answers `{"success": true}` once queued; a worker asks the HXL proxy and posts the sheet changes to
      CKAN's `hdx_fs_check_resource_revise`. A refused request gets `{"success": false, "message",
      "error_type"}`.
    """
    rt, caller = _runtime(), Caller.from_request()
    authorize(rt.settings, access_of(service.request_file_structure_check), caller)
    try:
        body = _json_body()
        if not isinstance(body, dict):
            raise FsCheckRequestError("The request body must be a JSON object")
        url, history = body.get("hxl_proxy_source_info_url"), body.get("fs_check_info")
        service.request_file_structure_check(rt, caller, dataset_id, resource_id, url, history)
    except AccessDenied:
        raise
    except HdxError as error:
        return jsonify(success=False, message=error.message, error_type=error.error_type)
    except RedisError as error:
        log.error("file-structure-check: %s: %s", QUEUE_DOWN_MESSAGE, type(error).__name__)
        return jsonify(success=False, message=QUEUE_DOWN_MESSAGE, error_type="service-unavailable")
    return jsonify(success=True)


def _json_body() -> Any:
    try:
        return request.get_json(silent=True)
    except HTTPException as error:  # too large
        raise FsCheckRequestError(f"The request body could not be read ({error.name})") from None


def init_app(app: Flask) -> None:
    """Register the slice's metrics."""
    register_metric_source(app, stream_metrics)
    register_metric_source(app, fs_check_callbacks_pending)
