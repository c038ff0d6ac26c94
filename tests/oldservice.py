"""Jobs written the way the old HDX Job Processor wrote them: rq 1.13 with its pickle serializer, rq-scheduler 0.13.

Layouts taken from rq 1.13.0's ``Job.to_dict``/``Queue.enqueue_job`` and rq-scheduler 0.13.0's
``Scheduler.enqueue_in`` (read from their released wheels): the job hash ``rq:job:<id>`` holds ``data`` =
``zlib.compress(pickle.dumps((func_name, None, args, kwargs), HIGHEST_PROTOCOL))`` beside text fields;
``Queue.enqueue_call`` adds ``status``/``origin``/``enqueued_at``/``timeout``, adds ``rq:queue:<q>`` to
``rq:queues`` and RPUSHes the id; rq-scheduler saves the job with ``origin`` = its queue and no status, and
ZADDs its id to ``rq:scheduler:scheduled_jobs`` scored by the run time in Unix seconds. The dicts and
function paths are the old service's (CONTRACTS.md §5; gisrestlayer's enqueue calls).
"""

from __future__ import annotations

import calendar
import datetime as dt
import pickle
import uuid
import zlib
from typing import Any

from redis import Redis

RQ_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
OLD_TOKEN = "old-ckan-sysadmin-token-5b1f0c"
"""The CKAN token the old service froze into its dicts."""

IMPORT = "importapi.tasks.create_preview.create_preview_task"
ANALYTICS = "analyticsapi.tasks.send_event.send_event_task"
EVENTS = "eventapi.tasks.detect_changes.detect_changes"
FS_CHECK = "filestructurecheckapi.tasks.file_structure_check.fs_check_task"
SCHEDULED_CALL = "schedulerapi.tasks.make_api_call.schedule_api_task"


def _call_string(func_name: str, args: Any, kwargs: dict[str, Any]) -> str:
    """rq 1.13's ``get_call_string`` (each argument's repr cut at 75 characters): the job's description."""

    def cut(text: str) -> str:
        return text[:75] + "..." if len(text) > 75 else text

    parts = [cut(repr(arg)) for arg in args] + [f"{key}={cut(repr(value))}" for key, value in kwargs.items()]
    return f"{func_name}({', '.join(parts)})"


def job_hash(func_name: str, args: Any, kwargs: dict[str, Any], origin: str, data: bytes | None = None) -> dict:
    """The fields rq 1.13 saves for a new job (before a queue adds its own)."""
    now = dt.datetime.now(dt.UTC).strftime(RQ_TIMESTAMP)
    pickled = pickle.dumps((func_name, None, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "created_at": now,
        "data": zlib.compress(data if data is not None else pickled),
        "success_callback_name": "",
        "failure_callback_name": "",
        "started_at": "",
        "ended_at": "",
        "last_heartbeat": "",
        "worker_name": "",
        "origin": origin,
        "description": _call_string(func_name, args, kwargs),
        "timeout": 180,
    }


def enqueue(redis: Redis, queue: str, func_name: str, task: dict[str, Any], *, data: bytes | None = None) -> str:
    """``Queue(queue).enqueue_call(func=<func>, args=[task], timeout=180)`` as rq 1.13 does it; the job id."""
    job_id = str(uuid.uuid4())
    fields = job_hash(func_name, [task], {}, queue, data)
    fields |= {"status": "queued", "enqueued_at": dt.datetime.now(dt.UTC).strftime(RQ_TIMESTAMP)}
    with redis.pipeline() as pipe:
        pipe.sadd("rq:queues", f"rq:queue:{queue}")
        pipe.hset(f"rq:job:{job_id}", mapping=fields)
        pipe.rpush(f"rq:queue:{queue}", job_id)
        pipe.execute()
    return job_id


def enqueue_in(redis: Redis, delay: dt.timedelta, task: dict[str, Any], queue: str = "default_scheduler_q") -> str:
    """``scheduler.enqueue_in(delay, schedule_api_task, args=task, timeout=180)`` as rq-scheduler 0.13 does it."""
    job_id = str(uuid.uuid4())
    run_at = dt.datetime.now(dt.UTC) + delay
    redis.hset(f"rq:job:{job_id}", mapping=job_hash(SCHEDULED_CALL, (), {"args": task}, queue))
    redis.zadd("rq:scheduler:scheduled_jobs", {job_id: calendar.timegm(run_at.utctimetuple())})
    return job_id


# --- the old service's dicts (CONTRACTS.md §5) ---


def import_task(dataset_id: str, resource_id: str, url: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "resource_id": resource_id,
        "download_url": url,
        "url_type": "upload",
        "download_chunk_size": 1048576,
        "max_file_size_mb": 300 * 1024 * 1024,
        "timeout_sec": 120,
        "ckan_api_base_url": "http://old-ckan:5000/api/action",
        "resource_update_action": "hdx_resource_update_metadata",
        "gis_api_pattern": "http://old-gisapi/{}",
        "table_name_prefix": "pre",
        "tmp_download_directory": "/tmp",
        "ckan_server_url": "old-ckan",
        "verify_ckan_ssl": True,
        "hdx_user_agent": "HDXINTERNAL_GEOPREVIEW",
        "ckan_api_key": OLD_TOKEN,  # older releases froze the token into every dict
    }


def fs_check_task(dataset_id: str, resource_id: str, url: str, history: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "resource_id": resource_id,
        "hxl_proxy_source_info_url": url,
        "ckan_api_base_url": "http://old-ckan:5000/api/action",
        "resource_update_action": "hdx_fs_check_resource_revise",
        "verify_ckan_ssl": True,
        "hdx_user_agent": "HDXINTERNAL_GEOPREVIEW",
        "fs_check_info": history,
    }


def scheduler_task(add_job_body: dict[str, Any], delay: dt.timedelta) -> dict[str, Any]:
    return {
        "logging_config": "/srv/gisrestlayer/logging.conf",
        "timedelta": delay,
        "verify_ckan_ssl": True,
        "ckan_api_key": OLD_TOKEN,
        "ckan_api_base_url": "http://old-ckan:5000/api/action",
        "task_args": add_job_body,
        "hdx_user_agent": "HDXINTERNAL_GEOPREVIEW",
    }
