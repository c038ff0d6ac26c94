"""One-shot calls: scheduled through the API, made by a worker when rq's scheduler finds them due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from core.runtime import Runtime
from scheduler.settings import SchedulerSettings
from tests.conftest import TEST_GIS_API_KEY
from tests.fakes import FakeCkan, json_reply

from .conftest import SchedulerClock

AddJob = Callable[..., dict[str, Any]]
ListJobs = Callable[[], list[dict[str, Any]]]
Drain = Callable[..., bool]


def test_a_one_shot_post_is_made_after_its_delay_and_not_before(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    fake_ckan.on_action("package_patch", json_reply({"success": True, "result": {"id": "abc"}}))
    start = datetime.now(UTC)
    params = {"id": "abc", "notes": "nightly refresh"}

    answer = add_job(action="package_patch", sch_minutes=30, sch_hours=1, api_params=params)

    assert answer["success"] is True
    clock.enqueue_due(start + timedelta(minutes=89))
    assert burst_worker("default_scheduler_q") is False
    assert fake_ckan.action_calls("package_patch") == []

    clock.enqueue_due(start + timedelta(minutes=91))
    assert burst_worker("default_scheduler_q") is True

    [call] = fake_ckan.action_calls("package_patch")
    assert call.method == "POST"
    assert call.json() == params
    assert call.header("Authorization") == TEST_GIS_API_KEY
    assert call.header("User-Agent") == "HDXINTERNAL_GEOPREVIEW"
    assert call.header("Content-Type") == "application/json"
    [job] = list_jobs()
    assert job["id"] == answer["id"]
    assert job["state"] == "done" and job["next_run"] is None and job["runs"] == 1
    assert job["last_run"]["status"] == 200 and job["last_run"]["error"] is None
    assert job["last_run"]["duration_ms"] >= 0
    assert clock.pending_job_ids() == []


def test_a_get_sends_api_params_as_the_query(
    add_job: AddJob, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    add_job(action="status_show", method="GET", sch_minutes=5, api_params={"q": "x y", "rows": 5})

    clock.enqueue_due(datetime.now(UTC) + timedelta(minutes=6))
    burst_worker("default_scheduler_q")

    [call] = fake_ckan.action_calls("status_show")
    assert call.method == "GET"
    assert call.query == {"q": ["x y"], "rows": ["5"]}
    assert call.body == b""
    assert call.header("Authorization") == TEST_GIS_API_KEY


def test_a_500_is_retried_through_rq_and_the_success_recorded(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    fake_ckan.on_action("package_patch", json_reply({"success": True, "result": {}}))
    fake_ckan.script_action("package_patch", json_reply({"success": False, "error": "boom"}, 500))
    add_job(action="package_patch", api_params={"id": "abc"})

    clock.enqueue_due(datetime.now(UTC) + timedelta(seconds=1))
    burst_worker("default_scheduler_q")

    [job] = list_jobs()
    assert job["last_run"]["status"] == 500 and job["runs"] == 0 and job["state"] == "done"
    assert len(clock.pending_job_ids()) == 1  # the retry, scheduled by rq's Retry (30 s by default)
    clock.enqueue_due(datetime.now(UTC) + timedelta(seconds=25))
    assert burst_worker("default_scheduler_q") is False

    clock.enqueue_due(datetime.now(UTC) + timedelta(seconds=35))
    burst_worker("default_scheduler_q")

    calls = fake_ckan.action_calls("package_patch")
    assert [c.json() for c in calls] == [{"id": "abc"}, {"id": "abc"}]
    [job] = list_jobs()
    assert job["last_run"]["status"] == 200 and job["runs"] == 1
    assert clock.pending_job_ids() == []


def test_a_4xx_is_recorded_as_the_last_result_and_not_retried(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    refusal = {"success": False, "error": {"__type": "Authorization Error", "message": "Access denied"}}
    fake_ckan.on_action("package_patch", json_reply(refusal, 403))
    add_job(action="package_patch", api_params={"id": "abc"})

    clock.enqueue_due(datetime.now(UTC) + timedelta(seconds=1))
    burst_worker("default_scheduler_q")

    [job] = list_jobs()
    assert job["last_run"]["status"] == 403
    assert job["last_run"]["error"] == "HTTP 403: Authorization Error: Access denied"
    assert clock.pending_job_ids() == []
    clock.enqueue_due(datetime.now(UTC) + timedelta(days=1))
    assert burst_worker("default_scheduler_q") is False
    assert len(fake_ckan.action_calls("package_patch")) == 1


def test_retries_stop_after_the_configured_count(
    add_job: AddJob,
    list_jobs: ListJobs,
    clock: SchedulerClock,
    burst_worker: Drain,
    fake_ckan: FakeCkan,
    runtime: Runtime,
) -> None:
    fake_ckan.on_action("package_patch", json_reply({"success": False}, 503))
    add_job(action="package_patch")

    for hours in range(1, 6):
        clock.enqueue_due(datetime.now(UTC) + timedelta(hours=hours))
        burst_worker("default_scheduler_q")

    retries = len(SchedulerSettings.of(runtime.settings).retry_intervals)
    assert len(fake_ckan.action_calls("package_patch")) == 1 + retries
    [job] = list_jobs()
    assert job["last_run"]["status"] == 503 and job["runs"] == 0
