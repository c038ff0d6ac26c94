"""create-change-events end to end: the real API, a real worker process and the real stream."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from rq.job import Job

from core.connections import SERIALIZER, queue
from core.runtime import Runtime
from eventsapi.bus import MARKER_PREFIX
from eventsapi.intake import REQUEST_KEY_PREFIX
from tests.eventsapi.helpers import CASES, assert_matches_expected, case_body, load_case, stream_entries

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
PATH = "/api/create-change-events"


@pytest.mark.parametrize("number", CASES)
def test_every_example_case_reaches_the_stream_exactly(
    number: str, client: FlaskClient, runtime: Runtime, worker_process: RunCommand
) -> None:
    _, _, expected = load_case(number)

    response = client.post(PATH, json=case_body(number))
    assert response.status_code == 200
    assert response.get_json() == expected["expected_http_response"]["json"]

    done = worker_process("worker", "--burst", "event_q")
    assert done.returncode == 0, done.stderr

    entries = stream_entries(runtime.stream_redis)
    assert len(entries) == expected["expected_event_count"]
    assert all(set(fields) == {"event_type", "body"} for _, fields in entries)
    events = [json.loads(fields["body"]) for _, fields in entries]
    assert [fields["event_type"] for _, fields in entries] == [event["event_type"] for event in events]
    assert_matches_expected(events, expected["expected_events"])
    assert runtime.redis.keys(REQUEST_KEY_PREFIX + "*") == []  # the parked body is gone once written


def test_the_stream_is_trimmed_approximately_to_the_configured_length(
    settings_env: dict[str, str], runtime: Runtime, client: FlaskClient, worker_process: RunCommand
) -> None:
    body = case_body("01")
    template = body["new_dataset_dict"]["resources"][0]
    body["new_dataset_dict"]["resources"] = [template | {"id": f"r-{n:03d}"} for n in range(250)]
    assert client.post(PATH, json=body).get_json() == {"state": "success"}

    done = worker_process("worker", "--burst", "event_q", extra_env={"HDXRQ_STREAM_MAXLEN": "10"})

    assert done.returncode == 0, done.stderr
    length = runtime.stream_redis.xlen("hdx_event_stream")
    assert 10 <= length < 251  # 251 written; MAXLEN ~ trims whole nodes, never below the limit
    newest = json.loads(runtime.stream_redis.xrevrange("hdx_event_stream", count=1)[0][1][b"body"])
    assert newest["resource_id"] == "r-249"  # the oldest entries went, not the newest


def test_a_retried_job_does_not_write_the_events_twice(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool]
) -> None:
    client.post(PATH, json=case_body("01"))
    job_id = queue("event_q", runtime.redis).job_ids[0]
    job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
    request_id, _event_time = job.args
    assert burst_worker("event_q")
    assert runtime.stream_redis.xlen("hdx_event_stream") == 3

    # The worker died after the write but before the job was marked done: rq runs it again. The parked
    # body is still there in that situation, so put it back to make the rerun do the full work.
    runtime.redis.set(REQUEST_KEY_PREFIX + request_id, json.dumps(case_body("01")))
    queue("event_q", runtime.redis).enqueue_job(job)
    assert burst_worker("event_q")

    assert runtime.stream_redis.xlen("hdx_event_stream") == 3
    assert runtime.stream_redis.exists(MARKER_PREFIX + request_id)


def test_stream_redis_down_retries_the_job_instead_of_dropping_it(
    client: FlaskClient, runtime: Runtime, worker_process: RunCommand, burst_worker: Callable[..., bool]
) -> None:
    client.post(PATH, json=case_body("05"))
    job_id = queue("event_q", runtime.redis).job_ids[0]

    down = worker_process("worker", "--burst", "event_q", extra_env={"REDIS_STREAM_PORT": "1"})

    assert down.returncode == 0, down.stderr
    job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
    assert job.get_status() == "scheduled"  # retried later with backoff, not failed
    assert job.retries_left is not None and job.retries_left > 0
    assert runtime.stream_redis.xlen("hdx_event_stream") == 0

    # When its time comes (the scheduler would enqueue it), it writes the events.
    queue("event_q", runtime.redis).enqueue_job(job)
    assert burst_worker("event_q")
    entries = stream_entries(runtime.stream_redis)
    assert [fields["event_type"] for _, fields in entries] == ["resource-data-changed"]


def test_several_mb_bodies_are_accepted(client: FlaskClient, runtime: Runtime) -> None:
    body = case_body("01")
    body["new_dataset_dict"]["notes"] = "word " * 800_000  # ~4 MB

    response = client.post(PATH, json=body)

    assert response.get_json() == {"state": "success"}
    assert queue("event_q", runtime.redis).count == 1


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"username": "u", "new_dataset_dict": {}}', "old_dataset_dict"),
        (b'{"old_dataset_dict": {}, "new_dataset_dict": {}}', "username"),
        (b'{"username": "u", "old_dataset_dict": [], "new_dataset_dict": {}}', "old_dataset_dict must be an object"),
        (b'{"username": "u", "old_dataset_dict": {}, "new_dataset_dict": "x"}', "new_dataset_dict must be an object"),
        (b'{"username": 7, "old_dataset_dict": {}, "new_dataset_dict": {}}', "username must be a string"),
        (b"\xff\xfe\x00garbage", "not JSON"),
    ],
)
def test_unusable_bodies_get_a_200_failure_with_a_message(
    raw: bytes, message_part: str, client: FlaskClient, runtime: Runtime
) -> None:
    response = client.post(PATH, data=raw, content_type="application/json")

    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "failure" and message_part in body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert queue("event_q", runtime.redis).count == 0


def test_a_body_over_the_size_limit_gets_a_200_failure(
    settings_env: dict[str, str], runtime: Runtime, client: FlaskClient
) -> None:
    raw = b'{"username": "u", "old_dataset_dict": {}, "new_dataset_dict": {"notes": "' + b"x" * (33 * 2**20) + b'"}}'

    response = client.post(PATH, data=raw, content_type="application/json")

    assert response.status_code == 200
    assert response.get_json()["state"] == "failure"


def test_old_dict_null_is_accepted_as_a_creation(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool]
) -> None:
    body = case_body("01") | {"old_dataset_dict": None}

    assert client.post(PATH, json=body).get_json() == {"state": "success"}
    assert burst_worker("event_q")

    types = [fields["event_type"] for _, fields in stream_entries(runtime.stream_redis)]
    assert types == ["dataset-created", "resource-created", "resource-created"]


def test_when_disabled_it_says_so_instead_of_pretending(
    settings_env: dict[str, str], redis_dbs: tuple[int, int]
) -> None:
    from app.factory import create_app
    from app.settings import Settings

    runtime = Runtime(Settings.from_env({**settings_env, "EVENTS_API_ENABLED": "false"}))
    client = create_app(runtime=runtime).test_client()

    response = client.post(PATH, json=case_body("05"))

    assert response.status_code == 200
    assert response.get_json() == {
        "state": "failure",
        "message": "Change events are disabled on this service (EVENTS_API_ENABLED is false)",
    }
    assert queue("event_q", runtime.redis).count == 0
    runtime.close()


def test_queue_redis_down_gets_a_200_failure(settings_env: dict[str, str], redis_dbs: tuple[int, int]) -> None:
    from app.factory import create_app
    from app.settings import Settings

    runtime = Runtime(Settings.from_env({**settings_env, "HDX_REDIS_PORT": "1"}))
    client = create_app(runtime=runtime).test_client()

    response = client.post(PATH, json=case_body("05"))

    assert response.status_code == 200
    assert response.get_json()["state"] == "failure"
    assert "queue" in response.get_json()["message"]
    runtime.close()


def test_non_dataset_types_produce_no_events(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool]
) -> None:
    body = case_body("05")
    for side in ("old_dataset_dict", "new_dataset_dict"):
        body[side]["type"] = "showcase"

    assert client.post(PATH, json=body).get_json() == {"state": "success"}
    assert burst_worker("event_q")

    assert runtime.stream_redis.xlen("hdx_event_stream") == 0
