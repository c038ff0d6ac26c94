"""Job functions of the tiles slice: prerendering a freshly imported layer's expensive tiles.

After a successful import the importapi slice calls :func:`layer_imported` (a listener registered in
``tiles/__init__.py``); it queues :func:`prerender_layer` on ``tiles_q``, so the first map view of a dense
layer is served from storage instead of waiting a second for a low-zoom tile. Until the job has run, tiles
are built on request as before.

``tiles_q`` is a lane of its own (:mod:`core.queues`): the geo workers take it after ``geo_q``, so a
prerender never runs while an import or a callback to CKAN waits, and it stops after
``HDXRQ_TILES_PRERENDER_MAX_SEC`` (:func:`tiles.prerender.prerender`), which bounds how long an import
arriving meanwhile waits for the worker.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from rq import Retry

from core import runtime
from core.connections import queue
from core.queues import QueueName
from core.runtime import Runtime

from .errors import UnknownLayer
from .layers import load_layer
from .prerender import prerender
from .settings import TilesSettings

log = logging.getLogger(__name__)

PRERENDER_TIMEOUT_MARGIN_SEC = 300
"""rq's time limit of the job beyond its own time bound: the store's clean-up, the layer's extent, one cost query."""
PRERENDER_RETRY = Retry(max=2, interval=[60, 300])
"""A worker killed mid-run: the job runs again and skips the tiles already stored."""


def layer_imported(rt: Runtime, layer_id: str) -> None:
    """Listener of "layer replaced": queue the prerender of ``layer_id``; never fails the import."""
    config = TilesSettings.of(rt.settings)
    if not config.prerender:
        return
    try:
        queue(QueueName.TILES, rt.redis).enqueue(
            prerender_layer,
            layer_id,
            job_timeout=int(config.prerender_max_sec) + PRERENDER_TIMEOUT_MARGIN_SEC,
            retry=PRERENDER_RETRY,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"tiles prerender of layer {layer_id}",
        )
    except Exception:  # the layer is live either way; its tiles are then built on request
        log.exception("could not queue the tile prerender of %s", layer_id)


def prerender_layer(layer_id: str) -> dict[str, Any]:
    """Build and store the expensive tiles of the layer's current generation; safe to run twice."""
    rt = runtime.current()
    with rt.postgis.connection() as conn:
        try:
            layer = load_layer(conn, layer_id)
            report = prerender(conn, layer, TilesSettings.of(rt.settings))
        except (UnknownLayer, psycopg.errors.UndefinedTable):
            log.info("layer %s is gone: nothing to prerender", layer_id)
            return {"layer_id": layer_id, "state": "layer-gone"}
    log.info(
        "prerendered %d tiles of %s (z0-z%s, %d already stored) in %.1f s: %s",
        report.stored,
        layer_id,
        report.deepest_zoom,
        report.already_stored,
        report.seconds,
        report.state,
    )
    return report.as_dict()
