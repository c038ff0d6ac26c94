"""OGC API – Processes over the real queues, driven by OWSLib and by plain HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient
from openapi_spec_validator import validate
from owslib.ogcapi.processes import Processes
from rq.job import Job, JobStatus

from core.connections import SERIALIZER, blocking_redis, queue
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT
from tests.fakes import FakeCkan, FakeService, Reply
from tests.reliability.conftest import advance_rq_clock
from tests.waiting import wait_until

SAMPLES = ROOT / "tests" / "eventsapi" / "samples"
RunCommand = Callable[..., subprocess.CompletedProcess[str]]


def change_inputs() -> dict[str, Any]:
    return {
        "username": "ocha-editor",
        "old_dataset_dict": {},
        "new_dataset_dict": {
            "id": "c0ffee00-0000-4000-8000-000000000001",
            "type": "dataset",
            "name": "test-dataset",
            "title": "Test dataset",
            "organization": {"id": "org-1", "name": "org", "title": "Org"},
            "resources": [],
        },
    }


def execute(client: FlaskClient, process_id: str, inputs: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/processes/{process_id}/execution", json={"inputs": inputs}, headers=headers)


@contextmanager
def running_worker(settings_env: dict[str, str], *queues: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    worker = subprocess.Popen(
        [sys.executable, HDXRQ_PY, "worker", "--with-scheduler", *queues],
        env={"PATH": os.environ["PATH"], **settings_env, **extra},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_owslib_lists_and_describes_processes(live_api: str) -> None:
    client = Processes(live_api)

    ids = {process["id"] for process in client.processes()}
    described = client.process("geopreview-import")

    assert ids == {"geopreview-import", "change-detection", "file-structure-check", "analytics-send", "ckan-call"}
    assert described["inputs"]["resource_id"]["minOccurs"] == 1
    assert described["inputs"]["url"]["schema"]["type"] == "string"
    assert "async-execute" in described["jobControlOptions"]


def test_landing_page_and_conformance(client: FlaskClient) -> None:
    links = {link["rel"]: link["href"] for link in client.get("/").get_json()["links"]}
    assert links["service-desc"].endswith("/openapi.json")
    assert links["http://www.opengis.net/def/rel/ogc/1.0/processes"].endswith("/processes")
    classes = client.get("/conformance").get_json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss" in classes


def test_async_execution_poll_to_success_and_results(
    live_api: str,
    client: FlaskClient,
    burst_worker: Callable[..., bool],
    runtime: Runtime,
    admin_headers: dict[str, str],
) -> None:
    owslib = Processes(live_api)
    answer = owslib.execute("change-detection", inputs=change_inputs(), async_=True)
    job_id = answer["jobID"]
    assert answer["status"] == "accepted"
    assert owslib.response_headers["Location"].endswith(f"/jobs/{job_id}")
    # Visible before any worker touched it.
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "accepted"
    assert client.get(f"/jobs/{job_id}/results", headers=admin_headers).status_code == 404

    assert burst_worker("event_q")

    info = client.get(f"/jobs/{job_id}").get_json()
    assert (info["status"], info["progress"], info["processID"]) == ("successful", 100, "change-detection")
    assert info["created"] and info["started"] and info["finished"]
    results = client.get(f"/jobs/{job_id}/results", headers=admin_headers).get_json()
    assert "result" in results
    stream = runtime.stream_redis.xrange(runtime.settings.event_bus.stream_name)
    assert [entry[b"event_type"] for _, entry in stream] == [b"dataset-created"]


def test_synchronous_execution_waits_for_the_results(
    client: FlaskClient, settings_env: dict[str, str], runtime: Runtime
) -> None:
    with running_worker(settings_env, "event_q"):
        response = execute(client, "change-detection", change_inputs(), Prefer="wait=60")

    assert response.status_code == 200, response.get_json()
    assert response.headers["Preference-Applied"] == "wait=60"
    assert "result" in response.get_json()
    assert runtime.stream_redis.xlen(runtime.settings.event_bus.stream_name) == 1


def test_bad_inputs_and_unknown_process(client: FlaskClient) -> None:
    bad = execute(client, "geopreview-import", {"resource_id": "../etc", "url": "ftp://x"})
    assert bad.status_code == 400
    body = bad.get_json()
    assert body["type"].endswith("invalid-parameter-value") and "resource_id" in body["detail"]
    assert client.post("/processes/nope/execution", json={"inputs": {}}).status_code == 404
    assert client.get("/jobs/no-such-job").get_json()["type"].endswith("no-such-job")


def test_jobs_started_by_ckan_endpoints_are_listed_page_by_page(
    client: FlaskClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    body = {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": change_inputs()["new_dataset_dict"]}
    assert client.post("/api/create-change-events", json=body).get_json() == {"state": "success"}
    analytics = execute(client, "analytics-send", {"event_name": "x", "send_ga": True, "ga_meta": {"t": "e"}})
    # Internal jobs (here a callback) are not process jobs: paging skips them.
    queue("analytics_q", runtime.redis).enqueue("importapi.tasks.send_callback", "r", {}, None)

    changes = client.get("/jobs?processID=change-detection", headers=admin_headers).get_json()
    seen, url = [], "/jobs?limit=1"
    while url:
        page = client.get(url, headers=admin_headers).get_json()
        assert len(page["jobs"]) <= 1
        seen += [(job["processID"], job["jobID"]) for job in page["jobs"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)

    assert [job["processID"] for job in changes["jobs"]] == ["change-detection"]
    assert sorted(seen) == [("analytics-send", analytics.get_json()["jobID"]), changes_id(changes)]
    assert client.get("/jobs?status=bogus", headers=admin_headers).status_code == 400


def changes_id(page: dict[str, Any]) -> tuple[str, str]:
    return ("change-detection", page["jobs"][0]["jobID"])


def test_the_job_list_logs_and_results_need_the_admin_token_and_a_status_does_not(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    job_id = execute(client, "change-detection", change_inputs()).get_json()["jobID"]

    for path in ("/jobs", f"/jobs/{job_id}/log", f"/jobs/{job_id}/results"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.get_json()["type"].endswith("unauthorized"), path
        assert job_id not in refused.get_data(as_text=True)
        assert client.get(path, headers=admin_headers).status_code in (200, 404), path  # 404: no results yet
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "accepted"


def test_dismiss_a_queued_job(client: FlaskClient, admin_headers: dict[str, str], runtime: Runtime) -> None:
    job_id = execute(client, "change-detection", change_inputs()).get_json()["jobID"]

    assert client.delete(f"/jobs/{job_id}").status_code == 401  # admin only
    dismissed = client.delete(f"/jobs/{job_id}", headers=admin_headers)

    assert dismissed.status_code == 200 and dismissed.get_json()["status"] == "dismissed"
    assert Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "canceled"
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "dismissed"


def test_dismiss_a_running_job_stops_it(
    client: FlaskClient,
    admin_headers: dict[str, str],
    settings_env: dict[str, str],
    fake_ckan: FakeCkan,
    runtime: Runtime,
) -> None:
    fake_ckan.on_action("package_patch", Reply(stall=True))
    inputs = {"action": "package_patch", "api_params": {"id": "x"}}
    job_id = execute(client, "ckan-call", inputs, **admin_headers).get_json()["jobID"]

    with running_worker(settings_env, "default_scheduler_q") as worker:
        fake_ckan.wait_for_action("package_patch")  # the job is running, blocked in the call
        assert client.delete(f"/jobs/{job_id}", headers=admin_headers).get_json()["status"] == "dismissed"
        assert wait_until_ended(runtime, job_id) == "stopped"
        assert worker.poll() is None  # the worker survives; only the job was stopped

    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "dismissed"


def wait_until_ended(runtime: Runtime, job_id: str, seconds: int = 60) -> str:
    """Block on RQ's result stream (no polling) until the job has ended; return its RQ status."""
    with blocking_redis(runtime.settings, seconds) as redis:
        job = Job.fetch(job_id, connection=redis, serializer=SERIALIZER)
        job.latest_result(timeout=seconds)
        return JobStatus(job.get_status(refresh=True)).value


def test_a_full_queue_answers_503_with_retry_after(settings_env: dict[str, str]) -> None:
    from app.factory import create_app
    from app.settings import Settings

    app = create_app(Settings.from_env({**settings_env, "HDXRQ_MAX_QUEUED_JOBS": "event_q=1"}))
    client = app.test_client()
    assert execute(client, "change-detection", change_inputs()).status_code == 201

    refused = execute(client, "change-detection", change_inputs())

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "30"
    assert refused.get_json()["type"].endswith("queue-full")


def test_a_job_past_its_process_timeout_fails_with_code_timeout(
    client: FlaskClient, settings_env: dict[str, str], runtime: Runtime, fake_ckan: FakeCkan
) -> None:
    """Each attempt is stopped at the process's time limit; after the last one the job fails with code
    ``timeout`` and CKAN hears that the check failed (rq's clock is moved past the retry intervals)."""
    with FakeService("hxl-proxy") as proxy:
        proxy.route("GET", "/api/data-preview", Reply(stall=True))
        inputs = {
            "dataset_id": "d1",
            "resource_id": "r1",
            "hxl_proxy_source_info_url": f"{proxy.url}/api/data-preview",
        }
        job_id = execute(client, "file-structure-check", inputs).get_json()["jobID"]

        with running_worker(settings_env, "fs_check_q", HDXRQ_PROCESS_TIMEOUTS="file-structure-check=2"):
            for attempt in (1, 2):
                proxy.wait_for_calls("/api/data-preview", attempt)
                wait_until(lambda: rq_status(runtime, job_id) == "scheduled", 30, f"attempt {attempt} to time out")
                advance_rq_clock(runtime.redis, 300, ["fs_check_q"])
            proxy.wait_for_calls("/api/data-preview", 3)
            wait_until(lambda: rq_status(runtime, job_id) == "failed", 30, "the last attempt to fail")
            callback = fake_ckan.wait_for_action("hdx_fs_check_resource_revise", 1)[0].json()

    info = client.get(f"/jobs/{job_id}").get_json()
    assert info["status"] == "failed"
    assert info["message"].startswith("timeout:")
    assert callback["value"]["state"] == "error"
    assert callback["value"]["error_type"] == "fs-check-interrupted"


def rq_status(runtime: Runtime, job_id: str) -> str:
    return JobStatus(Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status()).value


def test_job_log_holds_the_lines_the_job_logged(
    client: FlaskClient, worker_process: RunCommand, settings_env: dict[str, str], admin_headers: dict[str, str]
) -> None:
    job_id = execute(client, "change-detection", change_inputs()).get_json()["jobID"]
    assert worker_process("worker", "--burst", "event_q").returncode == 0

    lines = client.get(f"/jobs/{job_id}/log", headers=admin_headers).get_json()["log"]

    assert lines, "the job logged nothing"
    secret = settings_env["HDX_GIS_API_KEY"]
    assert all(secret not in line for line in lines)


def test_openapi_document_is_valid_and_complete(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    validate(document)
    for path in ("/api/add-layer/dataset/{dataset_id}/resource/{resource_id}", "/processes/{process_id}/execution",
                 "/jobs/{job_id}", "/gis/{layer_id}/{z}/{x}/{y}.pbf", "/api/send-analytics"):  # fmt: skip
        assert path in document["paths"], path
    assert not any(path.startswith("/monitor/") and path != "/monitor/workers.json" for path in document["paths"])
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui-bundle.js" in page.data
    with client.get("/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200 and asset.content_type.startswith("text/javascript")


def test_example_case_through_the_process_matches_the_expected_events(
    client: FlaskClient, burst_worker: Callable[..., bool], runtime: Runtime
) -> None:
    inputs = {
        "username": "ocha-editor",
        "old_dataset_dict": json.loads((SAMPLES / "case-01-old.json").read_text()),
        "new_dataset_dict": json.loads((SAMPLES / "case-01-new.json").read_text()),
    }
    expected = json.loads((SAMPLES / "case-01-expected.json").read_text())
    execute(client, "change-detection", inputs)
    burst_worker("event_q")
    written = runtime.stream_redis.xrange(runtime.settings.event_bus.stream_name)
    assert [json.loads(entry[b"body"])["event_type"] for _, entry in written] == [
        event["event_type"] for event in expected["expected_events"]
    ]


def test_an_analytics_event_sent_as_a_process_requests_its_delivery(
    client: FlaskClient, burst_worker: Callable[..., bool], runtime: Runtime
) -> None:

    inputs = {"event_name": "x", "send_mixpanel": True, "mixpanel_token": "t", "mixpanel_tracking_id": "u"}
    job_id = execute(client, "analytics-send", inputs).get_json()["jobID"]
    assert burst_worker("analytics_q", max_jobs=1)

    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "successful"
    drains = [j for j in queue("analytics_q", runtime.redis).get_jobs() if j.func_name == "analyticsapi.tasks.drain"]
    assert len(drains) == 1
