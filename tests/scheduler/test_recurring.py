"""Recurring schedules: every tick calls once, the chain survives failures and duplicates, cancel stops it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from rq.job import Job

from core.connections import SERIALIZER
from core.runtime import Runtime
from scheduler import store, tasks
from tests.fakes import FakeCkan, json_reply

from .conftest import SchedulerClock

AddJob = Callable[..., dict[str, Any]]
ListJobs = Callable[[], list[dict[str, Any]]]
Drain = Callable[..., bool]


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_an_interval_schedule_calls_once_per_tick(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    answer = add_job(action="status_show", interval_minutes=15, api_params={"n": 1})
    first = _iso(answer["next_run"])
    assert abs((first - datetime.now(UTC)) - timedelta(minutes=15)) < timedelta(seconds=5)

    for tick in range(3):
        due = first + timedelta(minutes=15 * tick)
        clock.enqueue_due(due - timedelta(seconds=1))
        assert burst_worker("default_scheduler_q") is False
        clock.enqueue_due(due)
        assert burst_worker("default_scheduler_q") is True
        assert len(fake_ckan.action_calls("status_show")) == tick + 1
        [job] = list_jobs()
        assert _iso(job["next_run"]) == due + timedelta(minutes=15)
        assert job["runs"] == tick + 1 and job["state"] == "scheduled"
        assert len(clock.pending_job_ids()) == 1


def test_a_cron_schedule_follows_its_expression_in_utc(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    answer = add_job(action="status_show", cron="30 3 * * *")
    first = _iso(answer["next_run"])
    assert (first.hour, first.minute, first.second) == (3, 30, 0) and first > datetime.now(UTC)

    clock.enqueue_due(first)
    burst_worker("default_scheduler_q")

    [job] = list_jobs()
    assert job["schedule"] == {"type": "cron", "timezone": "UTC", "cron": "30 3 * * *"}
    assert _iso(job["next_run"]) == first + timedelta(days=1)
    assert len(fake_ckan.action_calls("status_show")) == 1


def test_missed_ticks_are_coalesced_into_one_call(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    first = _iso(add_job(action="status_show", interval_minutes=10)["next_run"])

    clock.enqueue_due(first + timedelta(hours=5))  # workers were down for five hours
    burst_worker("default_scheduler_q")

    assert len(fake_ckan.action_calls("status_show")) == 1
    [job] = list_jobs()
    assert _iso(job["next_run"]) > datetime.now(UTC)  # the next one is in the future, not a backlog


def test_a_failing_call_does_not_break_the_chain(
    add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, burst_worker: Drain, fake_ckan: FakeCkan
) -> None:
    fake_ckan.on_action("status_show", json_reply({"success": False}, 502), method="GET")
    first = _iso(add_job(action="status_show", method="get", interval_minutes=60)["next_run"])

    clock.enqueue_due(first)
    burst_worker("default_scheduler_q")

    [job] = list_jobs()
    assert job["last_run"]["status"] == 502
    assert _iso(job["next_run"]) == first + timedelta(minutes=60)
    assert len(clock.pending_job_ids()) == 2  # the retry of this tick and the next tick


def test_running_a_tick_twice_calls_once_and_schedules_one_next_tick(
    runtime: Runtime, add_job: AddJob, list_jobs: ListJobs, clock: SchedulerClock, fake_ckan: FakeCkan
) -> None:
    schedule_id = add_job(action="status_show", interval_minutes=5)["id"]
    schedule = store.load(runtime.redis, schedule_id)
    assert schedule is not None and schedule.next_tick is not None

    tasks.run_scheduled_call(schedule_id, schedule.next_tick)
    tasks.run_scheduled_call(schedule_id, schedule.next_tick)  # a re-run after a killed worker

    assert len(fake_ckan.action_calls("status_show")) == 1
    # The tick's own job (called directly here) and exactly one job for the next tick.
    assert sorted(clock.pending_job_ids()) == [
        store.tick_job_id(schedule_id, schedule.next_tick),
        store.tick_job_id(schedule_id, schedule.next_tick + 300),
    ]
    assert list_jobs()[0]["runs"] == 1


def test_cancel_removes_the_schedule_and_its_next_call(
    client: FlaskClient,
    admin_headers: dict[str, str],
    add_job: AddJob,
    list_jobs: ListJobs,
    clock: SchedulerClock,
    burst_worker: Drain,
    fake_ckan: FakeCkan,
) -> None:
    schedule_id = add_job(action="status_show", interval_minutes=5)["id"]
    kept_id = add_job(action="status_show", interval_minutes=600)["id"]

    answer = client.delete(f"/api/scheduler/jobs/{schedule_id}", headers=admin_headers)

    assert answer.status_code == 200 and answer.get_json() == {"success": True, "id": schedule_id}
    assert [job["id"] for job in list_jobs()] == [kept_id]
    assert len(clock.pending_job_ids()) == 1
    clock.enqueue_due(datetime.now(UTC) + timedelta(minutes=30))
    assert burst_worker("default_scheduler_q") is False
    assert fake_ckan.action_calls("status_show") == []
    again = client.delete(f"/api/scheduler/jobs/{schedule_id}", headers=admin_headers)
    assert again.status_code == 404 and again.get_json()["success"] is False


def test_a_tick_already_queued_when_cancelled_makes_no_call(
    client: FlaskClient,
    admin_headers: dict[str, str],
    add_job: AddJob,
    list_jobs: ListJobs,
    clock: SchedulerClock,
    burst_worker: Drain,
    fake_ckan: FakeCkan,
) -> None:
    schedule_id = add_job(action="status_show", interval_minutes=5)["id"]
    clock.enqueue_due(datetime.now(UTC) + timedelta(minutes=6))  # on the queue, not yet run

    client.delete(f"/api/scheduler/jobs/{schedule_id}", headers=admin_headers)
    burst_worker("default_scheduler_q")

    assert fake_ckan.action_calls("status_show") == []
    assert list_jobs() == [] and clock.pending_job_ids() == []


def test_a_lost_tick_job_is_recreated_by_the_worker_start_up_hook(
    runtime: Runtime, add_job: AddJob, clock: SchedulerClock
) -> None:
    schedule_id = add_job(action="status_show", interval_minutes=5)["id"]
    [job_id] = clock.pending_job_ids()
    Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).delete()
    assert clock.pending_job_ids() == []

    tasks.repair_schedules(runtime)
    tasks.repair_schedules(runtime)

    assert clock.pending_job_ids() == [job_id]
    assert job_id.startswith(store.tick_job_id(schedule_id, 0)[:-1])
