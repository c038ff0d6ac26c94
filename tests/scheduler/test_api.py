"""The scheduler endpoints: contract shapes, validation, admin token, and no secret anywhere."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app.factory import create_app
from app.settings import Settings
from core.runtime import Runtime
from tests.conftest import TEST_ADMIN_TOKEN, TEST_FSCHECK_API_KEY, TEST_GIS_API_KEY
from tests.fakes import FakeCkan, json_reply

from .conftest import SchedulerClock

AddJob = Callable[..., dict[str, Any]]
ListJobs = Callable[[], list[dict[str, Any]]]
Drain = Callable[..., bool]


def test_add_job_answers_the_contract_and_list_jobs_shows_the_schedule(add_job: AddJob, list_jobs: ListJobs) -> None:
    before = datetime.now(UTC)
    answer = add_job(action="package_patch", sch_days=1, sch_hours="2", sch_minutes=3, api_params={"id": "x"})

    assert answer["success"] is True and len(answer["id"]) == 32
    [job] = list_jobs()
    assert list(job)[:3] == ["id", "created_at", "description"]
    assert job["id"] == answer["id"]
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(job["created_at"]) <= datetime.now(UTC)
    assert job["description"].startswith("POST package_patch once at ")
    assert job["action"] == "package_patch" and job["method"] == "post" and job["api_params"] == {"id": "x"}
    run_at = datetime.fromisoformat(job["next_run"])
    expected = before + timedelta(days=1, hours=2, minutes=3)
    assert timedelta(0) <= run_at - expected < timedelta(seconds=5)
    assert job["schedule"] == {"type": "once", "timezone": "UTC", "run_at": job["next_run"]}
    assert job["state"] == "scheduled" and job["runs"] == 0 and job["last_run"] is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"action": "package_patch/../../user_delete"}, "CKAN action name"),
        ({"action": "Package_Patch"}, "CKAN action name"),
        ({"action": "package_patch?id=1"}, "CKAN action name"),
        ({"action": "package_patch\n"}, "CKAN action name"),
        ({"action": ""}, "action is required"),
        ({"action": "status_show", "method": "delete"}, "method must be post or get"),
        ({"action": "status_show", "sch_minutes": -5}, "zero or more"),
        ({"action": "status_show", "sch_hours": "soon"}, "must be a number"),
        ({"action": "status_show", "sch_days": 9999}, "longer than a year"),
        ({"action": "status_show", "api_params": ["a"]}, "api_params must be a JSON object"),
        ({"action": "status_show", "method": "get", "api_params": {"a": {"b": 1}}}, "for get"),
        ({"action": "status_show", "cron": "every day"}, "five-field cron"),
        ({"action": "status_show", "cron": "0 3 * * *", "interval_minutes": 5}, "not both"),
        ({"action": "status_show", "interval_minutes": 0}, "interval_minutes"),
        ({"action": "status_show", "interval_minutes": 1.5}, "interval_minutes"),
        ({"action": "status_show", "api_params": {"token": TEST_GIS_API_KEY}}, "must not contain credentials"),
    ],
)
def test_bad_requests_are_refused_in_the_contract_shape_and_nothing_is_stored(
    add_job: AddJob, runtime: Runtime, body: dict[str, Any], reason: str
) -> None:
    answer = add_job(**body)

    assert answer["success"] is False
    assert answer["message"].startswith("Could not schedule job: ")
    assert reason in answer["message"]
    assert runtime.redis.keys("*") == []


def test_a_body_that_is_not_json_is_refused(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    answer = client.post("/api/scheduler/add_job", data="action=x", headers=admin_headers)

    assert answer.status_code == 200
    assert answer.get_json() == {"success": False, "message": "Could not schedule job: the body must be a JSON object"}


def test_the_allow_list_limits_actions(settings_env: dict[str, str], admin_headers: dict[str, str]) -> None:
    settings = Settings.from_env({**settings_env, "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": "status_show, package_patch"})
    rt = Runtime(settings)
    try:
        client = create_app(runtime=rt).test_client()
        refused = client.post("/api/scheduler/add_job", json={"action": "user_delete"}, headers=admin_headers)
        allowed = client.post("/api/scheduler/add_job", json={"action": "package_patch"}, headers=admin_headers)
    finally:
        rt.close()

    assert refused.get_json()["success"] is False
    assert "not in HDXRQ_SCHEDULER_ALLOWED_ACTIONS" in refused.get_json()["message"]
    assert allowed.get_json()["success"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/scheduler/add_job"),
        ("get", "/api/scheduler/list_jobs"),
        ("delete", "/api/scheduler/jobs/0123456789abcdef0123456789abcdef"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TEST_ADMIN_TOKEN}])
def test_every_endpoint_requires_the_admin_token(
    client: FlaskClient, runtime: Runtime, method: str, path: str, headers: dict[str, str]
) -> None:
    answer = getattr(client, method)(path, json={"action": "status_show"}, headers=headers)

    assert answer.status_code == 401
    assert answer.get_json()["error_type"] == "unauthorized"
    assert runtime.redis.keys("hdxrq:scheduler:*") == []


def test_cancelling_an_unknown_or_malformed_id_answers_404(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    for schedule_id in ("0123456789abcdef0123456789abcdef", "nope", "x" * 500):
        answer = client.delete(f"/api/scheduler/jobs/{schedule_id}", headers=admin_headers)
        assert answer.status_code == 404
        body = answer.get_json()
        assert body["success"] is False and body["error_type"] == "schedule-not-found"
        assert len(body["message"]) < 100


def _every_redis_value(redis: Redis) -> list[bytes]:
    """Every key and value in the RQ Redis, compressed job data included."""
    seen: list[bytes] = []
    for key in redis.keys("*"):
        seen.append(key)
        kind = redis.type(key)
        if kind == b"hash":
            for field, value in redis.hgetall(key).items():
                seen += [field, value]
                try:
                    seen.append(zlib.decompress(value))
                except zlib.error:
                    pass
        elif kind == b"string":
            seen.append(redis.get(key) or b"")
        elif kind == b"list":
            seen += redis.lrange(key, 0, -1)
        elif kind == b"set":
            seen += list(redis.smembers(key))
        elif kind == b"zset":
            seen += redis.zrange(key, 0, -1)
        elif kind == b"stream":
            seen += [repr(entry).encode() for entry in redis.xrange(key)]
    return seen


def test_no_token_appears_in_redis_list_jobs_or_job_descriptions(
    add_job: AddJob,
    list_jobs: ListJobs,
    client: FlaskClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    clock: SchedulerClock,
    burst_worker: Drain,
    fake_ckan: FakeCkan,
) -> None:
    fake_ckan.on_action("package_patch", json_reply({"success": True, "result": {}}))
    add_job(action="package_patch", api_params={"id": "a"})
    add_job(action="status_show", interval_minutes=5)
    add_job(action="status_show", cron="0 * * * *", method="get")
    clock.enqueue_due(datetime.now(UTC) + timedelta(hours=2))
    burst_worker("default_scheduler_q")
    assert fake_ckan.action_calls("package_patch")[0].header("Authorization") == TEST_GIS_API_KEY

    listed = client.get("/api/scheduler/list_jobs", headers=admin_headers).get_data()
    stored = _every_redis_value(runtime.redis)

    assert len(list_jobs()) == 3 and stored
    for secret in (TEST_GIS_API_KEY, TEST_FSCHECK_API_KEY, TEST_ADMIN_TOKEN):
        assert secret.encode() not in listed
        assert not [value for value in stored if secret.encode() in value]


def test_with_redis_down_the_endpoints_answer_clearly(
    settings_env: dict[str, str], admin_headers: dict[str, str]
) -> None:
    settings = Settings.from_env({**settings_env, "HDX_REDIS_PORT": "1"})  # nothing listens there
    rt = Runtime(settings)
    try:
        client = create_app(runtime=rt).test_client()
        added = client.post("/api/scheduler/add_job", json={"action": "status_show"}, headers=admin_headers)
        listed = client.get("/api/scheduler/list_jobs", headers=admin_headers)
        cancelled = client.delete("/api/scheduler/jobs/0123456789abcdef0123456789abcdef", headers=admin_headers)
    finally:
        rt.close()

    assert added.status_code == 200
    assert added.get_json() == {"success": False, "message": "Could not schedule job: Redis is unavailable"}
    for answer in (listed, cancelled):
        assert answer.status_code == 503
        assert answer.get_json() == {
            "success": False,
            "message": "Redis is unavailable",
            "error_type": "service-unavailable",
        }
