"""Job functions of the eventsapi slice (``event_q`` and ``fs_check_q``); all are safe to run twice.

A file-structure check runs again when an attempt is interrupted (the worker died or the job raised), as
imports do (:data:`FS_CHECK_RETRY`); when the last attempt is interrupted too, :func:`check_gave_up` (the
job's rq failure callback) sends CKAN an ``error`` value, so the resource never stays "processing".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rq import Callback, Retry, get_current_job

from core import runtime
from core.connections import queue
from core.errors import CkanError, CkanUnavailable, ConfigurationError
from core.jobs import on_last_attempt
from core.progress import report_progress
from core.queues import QueueName
from core.retry import CKAN_CALLBACKS

from . import bus, fscheck
from .detect import detect_events
from .errors import EventRequestError, FsCheckGaveUp, HxlProxyError
from .intake import REQUEST_KEY_PREFIX, event_time_now, parse_change_request

if TYPE_CHECKING:
    from redis import Redis
    from rq.job import Job

log = logging.getLogger(__name__)

CALLBACK_ACTION = "hdx_fs_check_resource_revise"
FS_CHECK_RETRY = Retry(max=2, interval=[30, 120])
"""Re-runs a check whose worker died or that raised (the same policy as geopreview imports)."""
GAVE_UP_CALLBACK_TIMEOUT_SEC = 60


def enqueue_check(redis: Redis, dataset_id: str, resource_id: str, url: str, history: str) -> Job:
    """Queue :func:`check_file_structure` with its retries and its last-attempt callback to CKAN."""
    return queue(QueueName.FS_CHECK, redis).enqueue(
        check_file_structure,
        dataset_id,
        resource_id,
        url,
        history,
        retry=FS_CHECK_RETRY,
        on_failure=Callback(check_gave_up, timeout=GAVE_UP_CALLBACK_TIMEOUT_SEC),
        failure_ttl=30 * 24 * 3600,
        description=f"file-structure check of resource {resource_id}",
    )


def publish_change_events(request_id: str, event_time: str) -> dict[str, Any]:
    """Detect the events of a parked create-change-events request and write them to the stream, once."""
    rt = runtime.current()
    key = REQUEST_KEY_PREFIX + request_id
    raw = rt.redis.get(key)
    if raw is None:
        if bus.already_published(rt.stream_redis, request_id):
            return {"request_id": request_id, "written": 0, "note": "already written"}
        log.error("request %s: body expired or missing; its events cannot be detected", request_id)
        return {"request_id": request_id, "written": 0, "note": "request body missing"}
    try:
        request = parse_change_request(raw)
    except EventRequestError as error:  # validated by the API already; a corrupted key is not worth retrying
        log.error("request %s: %s", request_id, error.message)
        rt.redis.delete(key)
        return {"request_id": request_id, "written": 0, "note": error.message}
    report_progress("detecting", 10.0)
    events = detect_events(request.old_dataset_dict, request.new_dataset_dict, request.username, event_time)
    report_progress("publishing", 60.0)
    stream = rt.settings.event_bus
    ids = bus.publish_events(rt.stream_redis, stream.stream_name, events, request_id=request_id, maxlen=stream.maxlen)
    rt.redis.delete(key)  # only after the write: a killed job is re-run from the parked body
    log.info("request %s: %d event(s) detected, %d written", request_id, len(events), len(ids))
    return {"request_id": request_id, "written": len(ids), "event_types": [e["event_type"] for e in events]}


def check_file_structure(dataset_id: str, resource_id: str, source_info_url: str, fs_check_info: Any) -> str:
    """Ask the HXL proxy about a resource, diff its sheets with the last check and report to CKAN."""
    settings = runtime.current().settings
    report_progress("asking the HXL proxy", 10.0)
    try:
        proxy = fscheck.fetch_source_info(source_info_url, settings)
        value = fscheck.success_value(fs_check_info, proxy, event_time_now(), resource_id)
    except HxlProxyError as error:
        log.warning("resource %s: %s", resource_id, error.message)
        value = fscheck.error_value(error, event_time_now())
    report_progress("calling back", 80.0)
    _deliver(dataset_id, resource_id, value)
    return value["state"]


@on_last_attempt
def check_gave_up(job: Job, exc_value: BaseException | None) -> None:
    """rq failure callback of :func:`check_file_structure`: when its last attempt failed or was
    interrupted, send CKAN an ``error``."""
    dataset_id, resource_id = str(job.args[0]), str(job.args[1])
    attempts = (FS_CHECK_RETRY.max or 0) + 1
    error = FsCheckGaveUp(f"the check was interrupted on each of its {attempts} attempts")
    log.error("resource %s: file structure check gave up (%s)", resource_id, type(exc_value).__name__)
    _deliver(dataset_id, resource_id, fscheck.error_value(error, event_time_now()))


def _deliver(dataset_id: str, resource_id: str, value: dict[str, Any]) -> None:
    """Send the check's value now, or queue its durable delivery when CKAN is unavailable."""
    try:
        send_fs_check_result(dataset_id, resource_id, value)
    except CkanUnavailable as error:
        log.warning("resource %s: %s; the callback will be retried", resource_id, error.message)
        queue(QueueName.FS_CHECK, runtime.current().redis).enqueue(
            "eventsapi.tasks.send_fs_check_result",
            dataset_id,
            resource_id,
            value,
            retry=CKAN_CALLBACKS.rq_retry(runtime.current().settings.ckan.callback_retry_hours * 3600),
            failure_ttl=30 * 24 * 3600,
            description=f"fs-check callback for resource {resource_id}",
        )


def send_fs_check_result(dataset_id: str, resource_id: str, value: dict[str, Any]) -> None:
    """POST the check's result to CKAN; raises CkanUnavailable (retried) and fails for good otherwise."""
    rt = runtime.current()
    body = fscheck.callback_body(dataset_id, resource_id, value)
    try:
        rt.ckan.action(CALLBACK_ACTION, token=rt.settings.ckan.fscheck_api_key, body=body)
    except CkanUnavailable:
        raise
    except (CkanError, ConfigurationError) as error:
        _no_more_retries()
        log.error("resource %s: fs-check callback refused: %s", resource_id, error.message)
        raise
    log.info("resource %s: fs-check result %s sent to CKAN", resource_id, value["state"])


def _no_more_retries() -> None:
    job = get_current_job()
    if job is not None:
        job.retries_left = 0  # a refusal is not transient: go to the failed registry now
