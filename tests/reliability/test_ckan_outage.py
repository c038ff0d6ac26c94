"""CKAN refuses connections for ten (simulated) minutes: every callback is delivered after it returns, once.

Three kinds of calls to CKAN are pending during the outage: geopreview callbacks, file-structure-check
callbacks and a scheduled CKAN call. CKAN is really down (its port is closed: connection refused); the
workers are real processes using each slice's own retry policy. Time is simulated with rq's own scheduler
and an injected clock: each round jumps to the moment the earliest retry is due, so the suite does not wait
ten minutes, and the retry schedules are exercised exactly as they are configured.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from core.connections import SERIALIZER
from core.runtime import Runtime
from tests.fakes import FakeCkan, FakeService, Reply, json_reply

from . import hostile
from .conftest import Proc, advance_rq_clock, wait_until

OUTAGE_SEC = 600
QUEUES = ("geo_q", "fs_check_q", "default_scheduler_q")
GEO_ACTION = "hdx_resource_update_metadata"
FS_ACTION = "hdx_fs_check_resource_revise"
SCHEDULED_ACTION = "hdx_test_action"
SOURCE_INFO = {
    "url_or_filename": "data.xlsx",
    "format": "XLSX",
    "sheets": [
        {
            "name": "Sheet1",
            "is_hidden": False,
            "nrows": 10,
            "ncols": 3,
            "has_merged_cells": False,
            "is_hxlated": True,
            "header_hash": "a",
            "hashtag_hash": "b",
        }
    ],
}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": SCHEDULED_ACTION, "HDXRQ_CKAN_TIMEOUT_SEC": "5"}


@pytest.fixture
def hxl_proxy() -> Iterator[FakeService]:
    with FakeService("hxl-proxy") as proxy:
        proxy.route("GET", "/api/source-info", json_reply(SOURCE_INFO))
        yield proxy


def scheduled_ids(redis: Redis) -> set[str]:
    return {job_id for name in QUEUES for job_id in ScheduledJobRegistry(name, connection=redis).get_job_ids()}


def settled(redis: Redis, job_ids: set[str]) -> bool:
    """Every tracked job is waiting for a retry or is done (none queued or running)."""
    jobs = Job.fetch_many(list(job_ids), connection=redis, serializer=SERIALIZER)
    waiting = scheduled_ids(redis)  # rq sets the status before it adds the job to the registry
    return all(job is not None and (job.get_status() in ("finished", "failed") or job.id in waiting) for job in jobs)


def next_due_in(redis: Redis) -> float:
    """Seconds until the earliest scheduled job is due (0 when one is due already or none is waiting)."""
    keys = [ScheduledJobRegistry(name, connection=redis).key for name in QUEUES]
    scores = [score for key in keys for _, score in redis.zrange(key, 0, 0, withscores=True)]
    return max(0.0, min(scores) - time.time()) if scores else 0.0


def test_callbacks_survive_a_ten_minute_ckan_outage(
    client: FlaskClient,
    fake_ckan: FakeCkan,
    runtime: Runtime,
    spawn: Callable[..., Proc],
    hxl_proxy: FakeService,
    admin_headers: dict[str, str],
) -> None:
    port = int(fake_ckan.url.rsplit(":", 1)[1])
    fake_ckan.close()  # CKAN is down: its port refuses connections from now on
    resources = [str(uuid.uuid4()) for _ in range(3)]
    checks = [str(uuid.uuid4()) for _ in range(2)]
    with FakeService("file-host") as host:
        host.route("GET", "/files/layer.geojson", Reply(body=hostile.VALID))
        for resource_id in resources:
            answer = client.get(
                f"/api/add-layer/dataset/d/resource/{resource_id}",
                query_string={"resource_download_url": f"{host.url}/files/layer.geojson", "url_type": "upload"},
            )
            assert answer.get_json()["state"] == "processing"
        for resource_id in checks:
            body = {"hxl_proxy_source_info_url": f"{hxl_proxy.url}/api/source-info?url=x", "fs_check_info": "[]"}
            answer = client.post(f"/api/file-structure-check/dataset/d/resource/{resource_id}", json=body)
            assert answer.get_json() == {"success": True}
        scheduled = {"action": SCHEDULED_ACTION, "api_params": {"id": "x"}}
        answer = client.post("/api/scheduler/add_job", json=scheduled, headers=admin_headers)
        assert answer.get_json()["success"] is True, answer.get_json()

        worker = spawn("worker", *QUEUES)
        pending = 3 + 2 + 1
        wait_until(lambda: len(scheduled_ids(runtime.redis)) == pending, 120, "every CKAN call to wait for a retry")
        tracked = scheduled_ids(runtime.redis)

        simulated, rounds = 0.0, 0
        while simulated < OUTAGE_SEC:  # CKAN still down: every attempt is refused
            simulated += _next_round(runtime.redis, tracked)
            rounds += 1
            assert scheduled_ids(runtime.redis) == tracked, _describe(runtime.redis, tracked)  # none given up
        assert rounds >= 4

        with FakeCkan(port=port) as ckan:  # CKAN is back, on the same address
            ckan.on_action(SCHEDULED_ACTION, json_reply({"success": True, "result": {}}))
            while scheduled_ids(runtime.redis):
                simulated += _next_round(runtime.redis, tracked)
            delivered_geo = [call.json()["id"] for call in ckan.action_calls(GEO_ACTION)]
            delivered_fs = [call.json()["id"] for call in ckan.action_calls(FS_ACTION)]
            delivered_scheduled = ckan.action_calls(SCHEDULED_ACTION)

    assert sorted(delivered_geo) == sorted(resources)  # each once
    assert sorted(delivered_fs) == sorted(checks)
    assert len(delivered_scheduled) == 1 and delivered_scheduled[0].json() == {"id": "x"}
    for call in ckan.action_calls(GEO_ACTION):
        assert json.loads(call.json()["shape_info"])["state"] == "success"
    assert all(job.get_status() == "finished" for job in _jobs(runtime.redis, tracked))
    assert worker.alive()
    print(f"\nCKAN outage: {simulated:.0f} simulated seconds, {rounds} refused rounds, all delivered once")


def _next_round(redis: Redis, tracked: set[str]) -> float:
    """Jump rq's clock to the earliest due retry, let the workers attempt it; the simulated seconds."""
    wait = next_due_in(redis) + 1
    advance_rq_clock(redis, wait, QUEUES)
    wait_until(lambda: settled(redis, tracked), 60, "the due retries to be attempted")
    return wait


def _jobs(redis: Redis, job_ids: set[str]) -> list[Job]:
    return [job for job in Job.fetch_many(list(job_ids), connection=redis, serializer=SERIALIZER) if job]


def _describe(redis: Redis, job_ids: set[str]) -> str:
    return "; ".join(f"{job.id}: {job.get_status()} retries_left={job.retries_left}" for job in _jobs(redis, job_ids))
