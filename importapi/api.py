"""HTTP endpoints of the importapi slice (CONTRACTS.md §2.1, §2.3, §2.4): thin views over :mod:`.service`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from core.auth import Caller
from core.errors import AccessDenied, HdxError, public_message
from core.metrics import register_metric_source
from core.runtime import Runtime

from . import service
from .metrics import callbacks_pending

log = logging.getLogger(__name__)

bp = Blueprint("importapi", __name__)

ACCEPTED = {
    "state": "processing",
    "message": "The processing of the geo-preview has started",
    "layer_id": "None",
    "error_type": "None",
    "error_class": "None",
}
DELETE_STARTED = {"state": "started", "message": "None", "error_type": "None", "error_class": "None"}


def _runtime() -> Runtime:
    return current_app.extensions["hdx"]  # type: ignore[no-any-return]


def _safe_message(error: Exception) -> str:
    """The failure's message for CKAN: ours, or the kind of failure (a library's text names internal hosts)."""
    return public_message(error, "The request could not be handled")


@bp.get("/api/add-layer/dataset/<dataset_id>/resource/<resource_id>")
def add_layer(dataset_id: str, resource_id: str) -> Response:
    """Import a resource's geo file into a map layer.

    CKAN calls this on every create or update of a GIS resource. It answers at once and a worker does the
    import (queue `geo_q`): download, unpack, load into PostGIS, then a call to CKAN's
    `hdx_resource_update_metadata` with the result (retried until CKAN takes it).

    * Query: `resource_download_url` (URL-encoded) and `url_type`.
    * Answers `{"state": "processing", ...}`, or `{"state": "failure", "error_type":
      "transformation-init-problem", ...}` when the import cannot be queued.
    * A second call for the same resource while one is queued or running replaces its URL: one import at a
      time per resource, the newest URL wins.
    """
    url = request.args.get("resource_download_url", "").strip()
    url_type = request.args.get("url_type", "")
    try:
        service.request_import(_runtime(), Caller.from_request(), dataset_id, resource_id, url, url_type)
    except AccessDenied:
        raise
    except Exception as error:
        log.warning("add-layer for resource %s refused: %s", resource_id, type(error).__name__)
        return jsonify(
            state="failure",
            message=_safe_message(error),
            layer_id="None",
            error_type="transformation-init-problem",
            error_class=type(error).__name__,
        )
    return jsonify(ACCEPTED)


@bp.post("/api/delete-one-layer/<resource_id>")
def delete_one_layer(resource_id: str) -> tuple[Response, int]:
    """Delete a resource's map layer.

    CKAN calls this when a resource is quarantined. Answers 200 `{"state": "started", ...}`, also when the
    layer is already gone; 500 when the database could not drop it.
    """
    try:
        service.delete_one_layer(_runtime(), Caller.from_request(), resource_id)
    except AccessDenied:
        raise
    except Exception as error:
        log.exception("delete-one-layer for resource %s failed", resource_id)
        body = {**DELETE_STARTED, "state": "failure", "message": "Could not delete the layer"}
        return jsonify({**body, "error_type": "pushing-to-postgis-problem", "error_class": type(error).__name__}), 500
    return jsonify(DELETE_STARTED), 200


@bp.get("/api/delete-layers")
def delete_layers() -> Response:
    """List the layers whose resource no longer exists in CKAN (dry run).

    Compares the layer tables with CKAN's `hdx_resource_id_list` and reports them in `items` without
    deleting anything. `GET /api/delete-layers/dry-run/false` deletes them.
    """
    return _delete_layers(dry_run=True)


@bp.get("/api/delete-layers/dry-run/<flag>")
def delete_layers_dry_run(flag: str) -> Response:
    """Delete the layers whose resource no longer exists in CKAN, or only list them.

    `false` deletes them and needs the admin token (`Authorization: Bearer <token>`); any other value is a
    dry run. Nothing is deleted when CKAN's answer looks wrong.
    """
    return _delete_layers(dry_run=flag.lower() != "false")


def _delete_layers(*, dry_run: bool) -> Response:
    operation = service.list_orphaned_layers if dry_run else service.delete_orphaned_layers
    try:
        report = operation(_runtime(), Caller.from_request())
    except AccessDenied:
        raise
    except Exception as error:
        log.warning("delete-layers failed: %s", type(error).__name__)
        return jsonify(_orphan_body("failure", _safe_message(error), [], dry_run, error))
    return jsonify(_orphan_body(report.state, report.message, report.items, dry_run, None))


def _orphan_body(state: str, message: str, items: list[str], dry_run: bool, error: Exception | None) -> dict[str, Any]:
    code = error.error_type if isinstance(error, HdxError) else ("unknown" if error else "None")
    return {
        "state": state,
        "message": message,
        "count": len(items),
        "items": items,
        "dry-run": dry_run,
        "error_type": code,
        "error_class": type(error).__name__ if error else "None",
    }


def init_app(app: Flask) -> None:
    """Register the slice's metrics."""
    register_metric_source(app, callbacks_pending)
