"""A real worker SIGKILLed in the middle of an import: the job runs again on another worker, CKAN gets
exactly one final callback, and no staging table or job folder is left behind.

Two moments: while the download is stalled mid-body (the fake file host sent part of the file and hangs),
and while ogr2ogr is loading a file big enough to take seconds. After the kill, rq's maintenance notices
the dead worker once its heartbeat expires (about 90 s in real time): the test moves rq's clock instead
(``advance_rq_clock``), then starts a second worker, whose start-up sweep removes the first one's leftovers.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from rq.job import Job

from core import procs
from core.connections import SERIALIZER, queue
from core.runtime import Runtime
from tests.fakes import FakeCkan, FakeService, Reply

from . import hostile
from .conftest import Proc, advance_rq_clock, wait_until

ACTION = "hdx_resource_update_metadata"


def many_points(count: int) -> bytes:
    features = (
        f'{{"type":"Feature","properties":{{"n":{i},"name":"point {i}"}},'
        f'"geometry":{{"type":"Point","coordinates":[{(i % 3600) / 10 - 180},{(i // 3600) % 1800 / 10 - 90}]}}}}'
        for i in range(count)
    )
    return ('{"type":"FeatureCollection","features":[' + ",".join(features) + "]}").encode()


def staging_tables(pg) -> list[str]:
    return [name for (name,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'hdxrq_staging'")]


def job_stage(runtime: Runtime, job_id: str) -> str | None:
    job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
    return job.get_meta(refresh=True).get("stage")


@pytest.mark.parametrize("moment", ["download stalled mid-body", "ogr2ogr loading"])
def test_sigkill_mid_import_runs_again_elsewhere_with_one_callback(
    moment: str,
    client: FlaskClient,
    fake_ckan: FakeCkan,
    runtime: Runtime,
    spawn: Callable[..., Proc],
    pg,
    settings,
) -> None:
    resource_id = str(uuid.uuid4())
    job_id = f"geopreview-{resource_id}"
    body = hostile.VALID if moment.startswith("download") else many_points(150_000)
    with FakeService("file-host") as host:
        host.route("GET", "/files/layer.geojson", Reply(body=body))
        if moment.startswith("download"):
            half = [body[: len(body) // 2], body[len(body) // 2 :]]
            host.script("GET", "/files/layer.geojson", Reply(body=iter(half), stall_after_chunks=1))
        answer = client.get(
            f"/api/add-layer/dataset/d/resource/{resource_id}",
            query_string={"resource_download_url": f"{host.url}/files/layer.geojson", "url_type": "upload"},
        )
        assert answer.get_json()["state"] == "processing"

        first = spawn("worker", "geo_q", "--name", f"first-{resource_id[:8]}")
        if moment.startswith("download"):
            host.wait_for_calls("/files/layer.geojson", 1, timeout=60)
            wait_until(lambda: job_stage(runtime, job_id) == "downloading", 30, "the download to start")
        else:
            wait_until(lambda: job_stage(runtime, job_id) == "loading" and staging_tables(pg), 120, "ogr2ogr to load")
        first.kill()  # the worker, its work horse and ogr2ogr: no chance to clean up
        assert Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "started"

        advance_rq_clock(runtime.redis, 300, ["geo_q"])  # heartbeat expired; the import's retry interval passed
        second = spawn("worker", "geo_q", "--name", f"second-{resource_id[:8]}")
        fake_ckan.wait_for_action(ACTION, 1, timeout=180)
        wait_until(lambda: _finished(runtime, job_id), 60, "the import job to finish")

    calls = fake_ckan.action_calls(ACTION)
    assert len(calls) == 1
    shape_info = json.loads(calls[0].json()["shape_info"])
    assert shape_info["state"] == "success", shape_info
    assert job_id in second.output()  # it ran again, on the second worker
    assert staging_tables(pg) == []
    assert list(Path(settings.importapi.gis_tmp).iterdir()) == []
    assert second.alive()


def _finished(runtime: Runtime, job_id: str) -> bool:
    return Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "finished"


@pytest.mark.parametrize("how", ["worker killed", "work horse killed"])
def test_an_import_killed_on_its_last_try_tells_ckan(
    how: str, client: FlaskClient, fake_ckan: FakeCkan, runtime: Runtime, spawn: Callable[..., Proc]
) -> None:
    """The last of its tries dies with its worker (found by rq's maintenance once the heartbeat expired), or
    its work horse alone is killed (out of memory): either way CKAN gets the failure, and only that."""
    resource_id = str(uuid.uuid4())
    job_id = f"geopreview-{resource_id}"
    half = [hostile.VALID[:50], hostile.VALID[50:]]
    with FakeService("file-host") as host:
        host.route("GET", "/files/layer.geojson", Reply(body=iter(half), stall_after_chunks=1))
        answer = client.get(
            f"/api/add-layer/dataset/d/resource/{resource_id}",
            query_string={"resource_download_url": f"{host.url}/files/layer.geojson", "url_type": "upload"},
        )
        assert answer.get_json()["state"] == "processing"
        job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
        job.retries_left = 0  # as after two interrupted tries
        job.save()

        worker = spawn("worker", "geo_q", "--name", f"last-{resource_id[:8]}")
        host.wait_for_calls("/files/layer.geojson", 1, timeout=60)
        wait_until(lambda: job_stage(runtime, job_id) == "downloading", 30, "the download to start")
        if how == "worker killed":
            worker.kill()
            advance_rq_clock(runtime.redis, 300, ["geo_q"])  # rq's maintenance finds the job abandoned
            spawn("worker", "geo_q", "--name", f"next-{resource_id[:8]}")  # delivers the callback
        else:
            for pid in procs.children(worker.pid):
                os.kill(pid, signal.SIGKILL)
        calls = fake_ckan.wait_for_action(ACTION, 1, timeout=120)
        wait_until(lambda: _status(runtime, job_id) == "failed", 30, "the import job to be failed")

    shape_info = json.loads(calls[0].json()["shape_info"])
    assert (shape_info["state"], shape_info["error_type"], shape_info["type"]) == ("failure", "unknown", "unknown")
    assert shape_info["message"].startswith("The import was interrupted on each of its 3 attempts")
    assert len(fake_ckan.action_calls(ACTION)) == 1
    if how == "work horse killed":
        assert worker.alive(), worker.output()


def _status(runtime: Runtime, job_id: str) -> str:
    return Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status()


def test_a_file_structure_check_killed_on_its_last_try_tells_ckan(
    client: FlaskClient, fake_ckan: FakeCkan, runtime: Runtime, spawn: Callable[..., Proc]
) -> None:
    with FakeService("hxl-proxy") as proxy:
        proxy.route("GET", "/api/source-info", Reply(stall=True))
        answer = client.post(
            "/api/file-structure-check/dataset/d1/resource/r1",
            json={"hxl_proxy_source_info_url": f"{proxy.url}/api/source-info", "fs_check_info": "[]"},
        )
        assert answer.get_json() == {"success": True}
        (job_id,) = queue("fs_check_q", runtime.redis).job_ids
        job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
        assert job.retries_left == 2  # checks retry like imports...
        job.retries_left = 0  # ...and this is the last of its tries
        job.save()

        worker = spawn("worker", "fs_check_q")
        proxy.wait_for_calls("/api/source-info", 1, timeout=60)
        for pid in procs.children(worker.pid):
            os.kill(pid, signal.SIGKILL)
        (call,) = fake_ckan.wait_for_action("hdx_fs_check_resource_revise", 1, timeout=60)

    value = call.json()["value"]
    assert (value["state"], value["error_type"]) == ("error", "fs-check-interrupted")
    assert value["message"] == "File structure check failed: the check was interrupted on each of its 3 attempts"
    assert worker.alive(), worker.output()
