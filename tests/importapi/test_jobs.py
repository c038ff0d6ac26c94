"""Newest request wins, durable callbacks, deletes, and a real ``./hdxrq.py worker --burst``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rq.job import Job

from core.auth import OPERATOR
from core.connections import SERIALIZER, queue
from core.errors import CkanUnavailable
from core.queues import QueueName
from importapi import service, tasks
from importapi.callback import CallbackNotAccepted, retry_policy
from importapi.errors import ImportSuperseded
from importapi.pipeline import run_import
from tests.conftest import HDXRQ_PY, ROOT, kill_process_tree
from tests.fakes import FakeCkan, Reply, json_reply

from .conftest import ACCEPTED, feature, geojson, polygon

ONE = geojson(feature(polygon(1, 1), name="first"))
TWO = geojson(feature(polygon(5, 5), name="second"), feature(polygon(6, 6), name="second"))


def new_resource() -> tuple[str, str]:
    resource_id = str(uuid.uuid4())
    return resource_id, "pre_" + resource_id.replace("-", "_")


def request(client, resource_id: str, url: str) -> None:
    answer = client.get(
        f"/api/add-layer/dataset/d1/resource/{resource_id}", query_string={"resource_download_url": url}
    )
    assert answer.get_json() == ACCEPTED


def callbacks(fake_ckan: FakeCkan) -> list[dict]:
    return [json.loads(c.json()["shape_info"]) for c in fake_ckan.action_calls("hdx_resource_update_metadata")]


def test_same_resource_twice_quickly_imports_once_with_the_newest(
    client, serve, burst_worker, fake_ckan, pg, runtime
) -> None:
    resource_id, layer_id = new_resource()
    request(client, resource_id, serve("one.geojson", ONE))
    request(client, resource_id, serve("two.geojson", TWO))
    assert queue("geo_q", runtime.redis).job_ids == [f"geopreview-{resource_id}"]
    burst_worker("geo_q")
    [shape_info] = callbacks(fake_ckan)
    assert shape_info["state"] == "success" and shape_info["bounding_box"] == "BOX(5 5,7 7)"
    assert pg.execute(f'SELECT count(*) FROM "{layer_id}"').fetchone() == (2,)
    job = Job.fetch(f"geopreview-{resource_id}", connection=runtime.redis, serializer=SERIALIZER)
    assert job.get_status() == "finished" and job.meta["stage"] == "calling back"


def test_request_arriving_during_a_running_import_wins(client, serve, burst_worker, fake_ckan, pg, runtime) -> None:
    resource_id, layer_id = new_resource()
    url_two = serve("two.geojson", TWO)

    def one_while_ckan_calls_again(call):
        service.request_import(runtime, OPERATOR, "d1", resource_id, url_two, "upload")  # arrives mid-download
        return Reply(body=ONE)

    request(client, resource_id, serve("one.geojson", one_while_ckan_calls_again))
    burst_worker("geo_q")
    [shape_info] = callbacks(fake_ckan)  # the superseded import sends nothing
    assert shape_info["bounding_box"] == "BOX(5 5,7 7)"
    assert pg.execute(f'SELECT DISTINCT name FROM "{layer_id}"').fetchall() == [("second",)]


def test_superseded_import_never_replaces_the_live_table(serve, pg, runtime, settings) -> None:
    _, layer_id = new_resource()
    run_import(serve("one.geojson", ONE), layer_id, settings=settings)
    answers = iter([True, False])  # current before loading, superseded inside the swap transaction
    with pytest.raises(ImportSuperseded):
        run_import(serve("two.geojson", TWO), layer_id, settings=settings, still_current=lambda: next(answers))
    assert pg.execute(f'SELECT name FROM "{layer_id}"').fetchall() == [("first",)]
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'hdxrq_staging'").fetchone() == (0,)


def test_callback_is_retried_until_ckan_accepts(runtime, fake_ckan) -> None:
    fake_ckan.script_action(
        "hdx_resource_update_metadata",
        json_reply({"error": "busy"}, 503),
        json_reply({"success": False, "error": {"message": "locked"}}, 409),
        json_reply({"success": True, "result": {}}),
    )
    shape_info = {"state": "success", "message": "Import successful"}
    with pytest.raises(CkanUnavailable):
        tasks.send_callback("r1", shape_info, 1)
    with pytest.raises(CallbackNotAccepted):
        tasks.send_callback("r1", shape_info, 1)
    assert tasks.send_callback("r1", shape_info, 1) == "delivered"
    assert tasks.send_callback("r1", shape_info, 0) == "dropped"  # older than what CKAN has
    assert len(fake_ckan.action_calls("hdx_resource_update_metadata")) == 3


def test_callback_job_is_durable_with_backoff_for_the_configured_window(runtime, settings) -> None:
    tasks.queue_callback(runtime, "r1", {"state": "success"}, 4)
    job = Job.fetch("geopreview-callback-r1-4", connection=runtime.redis, serializer=SERIALIZER)
    policy = retry_policy(settings)
    assert job.retries_left == policy.max and job.retry_intervals == policy.intervals
    assert job.enqueue_at_front_on_retry  # a due retry does not wait behind the imports either
    assert queue(QueueName.GEO, runtime.redis).job_ids[0] == job.id
    assert sum(policy.intervals[:-1]) + policy.intervals[-1] * (policy.max - len(policy.intervals) + 1) >= 24 * 3600


def test_a_finished_imports_callback_goes_out_while_other_imports_wait(
    client, serve, fake_ckan, runtime, settings_env
) -> None:
    """One geo worker, an import that finishes and three whose downloads hang: the first one's callback goes
    out before the next import starts (it is queued at the front of geo_q), not after the three."""
    finished, _ = new_resource()
    request(client, finished, serve("one.geojson", ONE))
    waiting = [new_resource()[0] for _ in range(3)]
    for resource_id in waiting:
        request(client, resource_id, serve("hangs.geojson", Reply(stall=True)))
    env = {"PATH": os.environ["PATH"], **settings_env, "HDXRQ_DOWNLOAD_READ_TIMEOUT_SEC": "600"}
    worker = subprocess.Popen(
        [sys.executable, HDXRQ_PY, "worker", "--lane", "geo"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        [call] = fake_ckan.wait_for_action("hdx_resource_update_metadata", timeout=60)
        still_queued = set(queue(QueueName.GEO, runtime.redis).job_ids)
    finally:
        kill_process_tree(worker)  # it hangs in the second import's download by design

    assert call.json()["id"] == finished and json.loads(call.json()["shape_info"])["state"] == "success"
    assert {tasks.import_job_id(resource_id) for resource_id in waiting[1:]} <= still_queued


def test_delete_one_layer_is_idempotent(client, serve, settings, pg) -> None:
    resource_id, layer_id = new_resource()
    run_import(serve("one.geojson", ONE), layer_id, settings=settings)
    started = {"state": "started", "message": "None", "error_type": "None", "error_class": "None"}
    for _ in range(2):
        answer = client.post(f"/api/delete-one-layer/{resource_id}")
        assert (answer.status_code, answer.get_json()) == (200, started)
    assert pg.execute("SELECT to_regclass(%s)", (f'public."{layer_id}"',)).fetchone() == (None,)


def test_delete_layers_matches_exactly_dry_run_by_default(client, serve, settings, pg, fake_ckan, admin_headers):
    pg.execute("DROP TABLE IF EXISTS pre_keepme_not_a_layer")
    pg.execute("CREATE TABLE pre_keepme_not_a_layer (id int)")
    kept, gone = new_resource(), new_resource()
    for _, layer_id in (kept, gone):
        run_import(serve("one.geojson", ONE), layer_id, settings=settings)
    existing = [name for (name,) in pg.execute("SELECT tablename FROM pg_tables WHERE tablename ~ '^pre_'")]
    known = [name[4:].replace("_", "-") for name in existing if name != gone[1]] + [kept[0]]
    fake_ckan.on_action("hdx_resource_id_list", json_reply({"success": True, "result": known}), method="GET")

    dry = client.get("/api/delete-layers").get_json()
    assert dry["state"] == "success" and dry["items"] == [gone[1]] and dry["dry-run"] is True
    assert dry["message"].startswith("Deleting 1 layers from postgis out of ")
    assert client.get("/api/delete-layers/dry-run/false").status_code == 401
    done = client.get("/api/delete-layers/dry-run/false", headers=admin_headers).get_json()
    assert done["items"] == [gone[1]] and done["dry-run"] is False and done["count"] == 1
    assert pg.execute("SELECT to_regclass(%s)", (gone[1],)).fetchone() == (None,)
    assert pg.execute("SELECT to_regclass(%s)", (kept[1],)).fetchone() != (None,)
    assert pg.execute("SELECT to_regclass('pre_keepme_not_a_layer')").fetchone() != (None,)


def test_delete_layers_refuses_an_empty_ckan_list(client, fake_ckan, admin_headers) -> None:
    fake_ckan.on_action("hdx_resource_id_list", json_reply({"success": True, "result": []}), method="GET")
    body = client.get("/api/delete-layers/dry-run/false", headers=admin_headers).get_json()
    assert body["state"] == "failure" and body["count"] == 0 and body["error_type"] == "ckan-problem"


def test_real_worker_process_imports_calls_back_and_sweeps(
    client, serve, worker_process, fake_ckan, pg, settings
) -> None:
    dead = subprocess.run(["true"], check=True)
    del dead
    leftover = Path(settings.importapi.gis_tmp) / f"hdxrq-import-{_dead_pid()}-stale"
    leftover.mkdir(parents=True)
    resource_id, layer_id = new_resource()
    request(client, resource_id, serve("two.geojson", TWO))
    done = worker_process("worker", "--burst", "geo_q")
    assert done.returncode == 0, done.stderr[-2000:]
    [shape_info] = callbacks(fake_ckan)
    assert shape_info["state"] == "success" and shape_info["layer_id"] == layer_id
    assert pg.execute(f'SELECT count(*) FROM "{layer_id}"').fetchone() == (2,)
    assert not leftover.exists()
    assert settings.ckan.gis_api_key.get_secret_value() not in done.stderr + done.stdout


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return process.pid
    raise AssertionError("pid still alive")
