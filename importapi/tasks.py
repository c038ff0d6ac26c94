"""Job functions on ``geo_q``: the import of a resource and its callback to CKAN.

``import_resource`` runs as job ``geopreview-<resource_id>`` (one stable id per resource, so "the latest
import of resource R" is one lookup) and imports the newest request recorded for the resource
(:mod:`importapi.requests_state`), again if a newer one arrived meanwhile. Its outcome, success or failure,
is always handed to ``send_callback``, a separate job with durable retries.

An attempt that does not get that far (the worker died, ran out of memory, the job ran past its time
limit, PostGIS stayed away) is retried by rq (:data:`IMPORT_RETRY`); when the last attempt fails that way,
:func:`import_gave_up` (the job's rq failure callback) sends CKAN the failure, so a resource never stays
"processing".
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from rq import Callback, Retry, get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from core import registry, runtime
from core.connections import queue
from core.errors import HdxError
from core.jobs import on_last_attempt
from core.progress import report_progress
from core.queues import QueueName
from core.runtime import Runtime

from . import callback, sweep
from .download import redact_url
from .errors import DownloadRefused, ImportProblem, ImportSuperseded, ImportTimeout, PostgisUnavailable
from .layers import LAYER_REPLACED, layer_id_for
from .pipeline import run_import
from .requests_state import ImportRequest, RequestState
from .settings import ImportSettings

log = logging.getLogger(__name__)

IMPORT_RETRY = Retry(max=2, interval=[30, 120])
"""Re-runs an import whose worker died (rq re-queues abandoned jobs that have retries left) or that lost
PostGIS midway (a restart or failover)."""
POSTGIS_LOST_MARKERS = (
    "server closed the connection",
    "terminating connection",
    "connection is lost",
    "connection is closed",
    "could not connect",
    "connection refused",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "cannot connect to postgis",
    "no connection to the server",
)
"""What libpq, psycopg and ogr2ogr say when the server went away (as opposed to refusing the data)."""
CALLBACK_TIMEOUT_SEC = 120
GAVE_UP_MESSAGE = (
    "The import was interrupted on each of its {attempts} attempts (the worker stopped or ran out of memory)"
)


def import_job_id(resource_id: str) -> str:
    """The RQ job id of a resource's import: stable, one per resource."""
    return f"geopreview-{resource_id}"


def import_job_timeout(rt: Runtime) -> int:
    """Room for two complete attempts (download, load and finish) before rq stops the job."""
    return 2 * (rt.settings.downloads.timeout_sec + ImportSettings.of(rt.settings).ogr_timeout_sec + 300)


def enqueue_import(rt: Runtime, resource_id: str) -> None:
    """Put ``import_resource(resource_id)`` on ``geo_q`` under its stable id."""
    queue(QueueName.GEO, rt.redis).enqueue(
        import_resource,
        resource_id,
        job_id=import_job_id(resource_id),
        job_timeout=import_job_timeout(rt),
        retry=IMPORT_RETRY,
        on_failure=Callback(import_gave_up, timeout=CALLBACK_TIMEOUT_SEC),
        result_ttl=7 * 24 * 3600,
        failure_ttl=30 * 24 * 3600,
        description=f"geopreview import of resource {resource_id}",
    )


def import_resource(resource_id: str) -> dict[str, Any]:
    """Import the newest requested file of ``resource_id`` and queue the callback; safe to run twice."""
    rt = runtime.current()
    _sweep_after_lost_attempt(rt)
    state = RequestState(rt.redis, resource_id)
    outcome: dict[str, Any] = {"resource_id": resource_id, "state": "nothing-to-do"}
    while True:
        request = state.read()
        if request is None:
            if state.finish(state.generation()):
                return outcome
            continue
        shape_info = _import_once(rt, resource_id, request, state)
        if shape_info is not None:
            queue_callback(rt, resource_id, shape_info, request.generation)
            if shape_info["state"] == "success":  # e.g. the tiles slice prerenders the new layer's tiles
                registry.current().notify(LAYER_REPLACED, rt, shape_info["layer_id"])
            outcome = {"resource_id": resource_id, "generation": request.generation, **_summary(shape_info)}
        if state.finish(request.generation):
            return outcome
        log.info("a newer request for resource %s arrived: importing again", resource_id)


def _import_once(rt: Runtime, resource_id: str, request: ImportRequest, state: RequestState) -> dict[str, Any] | None:
    """The ``shape_info`` to send for this request, or None when a newer request superseded it."""
    layer_id = _layer_id(rt, resource_id)
    log.info("importing resource %s from %s (generation %d)", resource_id, redact_url(request.url), request.generation)
    try:
        if not request.url.lower().startswith(("http://", "https://")):
            # run_import also takes local paths (for the CLI): a URL from CKAN must never name a worker's file.
            raise DownloadRefused("Only http and https URLs can be imported")
        result = run_import(
            request.url,
            layer_id,
            settings=rt.settings,
            still_current=lambda: state.generation() == request.generation,
        )
    except ImportSuperseded:
        log.info("import of resource %s generation %d superseded", resource_id, request.generation)
        return None
    except ImportProblem as error:
        _retry_if_postgis_lost(resource_id, error)
        log.warning("import of resource %s failed: %s (%s)", resource_id, error.message, error.error_type)
        return callback.failure_shape_info(layer_id, error)
    except JobTimeoutException:
        raise
    except Exception as error:
        _retry_if_postgis_lost(resource_id, error)
        log.exception("unexpected failure importing resource %s", resource_id)
        return callback.failure_shape_info(layer_id, ImportProblem())
    log.info("imported %d features into %s", result.feature_count, layer_id)
    return result.shape_info()


@on_last_attempt
def import_gave_up(job: Job, exc_value: BaseException | None) -> None:
    """rq failure callback of :func:`import_resource`: when its last attempt failed or was interrupted,
    tell CKAN the import failed."""
    resource_id = str(job.args[0])
    rt = runtime.current()
    state = RequestState(rt.redis, resource_id)
    request = state.read()
    error = _final_error(exc_value)
    log.error("import of resource %s gave up: %s (%s)", resource_id, error.message, error.error_type)
    if request is not None:
        shape_info = callback.failure_shape_info(_layer_id(rt, resource_id), error)
        queue_callback(rt, resource_id, shape_info, request.generation)
    state.release()


def _final_error(exc_value: BaseException | None) -> ImportProblem:
    """The coded error CKAN hears when the last attempt ended with ``exc_value`` (None: the worker died)."""
    if isinstance(exc_value, JobTimeoutException):
        return ImportTimeout("The import took longer than the job time limit")
    if isinstance(exc_value, ImportProblem):
        return exc_value
    if isinstance(exc_value, Exception) and postgis_lost(exc_value):
        return PostgisUnavailable()
    return ImportProblem(GAVE_UP_MESSAGE.format(attempts=(IMPORT_RETRY.max or 0) + 1))


def _sweep_after_lost_attempt(rt: Runtime) -> None:
    """A re-run first drops the staging tables a lost attempt could not (PostGIS went away under it)."""
    job = get_current_job()
    if job is None or job.retries_left is None or job.retries_left >= (IMPORT_RETRY.max or 0):
        return
    try:
        sweep.sweep_staging_tables(rt)
    except Exception as error:  # PostGIS still down: the import itself will say so
        log.warning("could not sweep staging tables before the re-run: %s", type(error).__name__)


def _retry_if_postgis_lost(resource_id: str, error: BaseException) -> None:
    """Raise :class:`PostgisUnavailable` (rq runs the job again after its retry interval) when the import
    failed because PostGIS went away and the job has retries left; the last attempt reports the failure."""
    job = get_current_job()
    if job is None or not job.retries_left or not postgis_lost(error):
        return
    log.warning("PostGIS went away while importing resource %s: the import will run again", resource_id)
    raise PostgisUnavailable() from None


def postgis_lost(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the connection to PostGIS was lost or refused."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, psycopg.OperationalError):
            return True
        if any(marker in str(seen).lower() for marker in POSTGIS_LOST_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _layer_id(rt: Runtime, resource_id: str) -> str:
    return layer_id_for(resource_id, rt.settings.postgis.table_name_prefix)


def _summary(shape_info: dict[str, Any]) -> dict[str, Any]:
    return {key: shape_info[key] for key in ("state", "message", "layer_id", "error_type")}


def queue_callback(rt: Runtime, resource_id: str, shape_info: dict[str, Any], generation: int | None) -> None:
    """Queue the durable delivery of ``shape_info`` to CKAN (``generation`` orders callbacks of a resource).

    The callback goes to the *front* of ``geo_q``: the worker that is ending this import takes it next,
    before any import waiting there (at the back it waited for every one of them: 80-98 s in the load run,
    bench/RESULTS.md). Its retries go to the front too (:func:`callback.retry_policy`).
    """
    report_progress("calling back", None)
    suffix = f"-{generation}" if generation is not None else ""
    queue(QueueName.GEO, rt.redis).enqueue(
        send_callback,
        resource_id,
        shape_info,
        generation,
        job_id=f"geopreview-callback-{resource_id}{suffix}",
        job_timeout=CALLBACK_TIMEOUT_SEC,
        retry=callback.retry_policy(rt.settings),
        result_ttl=24 * 3600,
        failure_ttl=30 * 24 * 3600,
        description=f"geopreview callback for resource {resource_id}",
        at_front=True,
    )


def send_callback(resource_id: str, shape_info: dict[str, Any], generation: int | None = None) -> str:
    """POST ``shape_info`` to CKAN; raising makes rq retry it later (see :func:`callback.retry_policy`)."""
    rt = runtime.current()
    state = RequestState(rt.redis, resource_id)
    if generation is not None and state.delivered_generation() > generation:
        log.info("callback for resource %s generation %d dropped: a newer one was delivered", resource_id, generation)
        return "dropped"
    try:
        callback.deliver(rt.ckan, rt.settings, resource_id, shape_info)
    except HdxError as error:
        log.warning("callback for resource %s not delivered: %s; will retry", resource_id, error.message)
        raise
    if generation is not None:
        state.mark_delivered(generation)
    log.info("callback for resource %s delivered (%s)", resource_id, shape_info.get("state"))
    return "delivered"
