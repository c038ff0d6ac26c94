"""Through real ``./hdxrq.py worker`` processes: rq's scheduler inside the workers does the timing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from rq.job import Job

from core.connections import SERIALIZER
from core.runtime import Runtime
from scheduler import store
from tests.conftest import TEST_GIS_API_KEY
from tests.fakes import FakeCkan
from tests.waiting import wait_until

from .conftest import SchedulerClock

AddJob = Callable[..., dict[str, Any]]
ListJobs = Callable[[], list[dict[str, Any]]]
RunCommand = Callable[..., subprocess.CompletedProcess[str]]


def test_a_burst_worker_with_its_scheduler_makes_a_due_call(
    runtime: Runtime,
    add_job: AddJob,
    list_jobs: ListJobs,
    clock: SchedulerClock,
    worker_process: RunCommand,
    fake_ckan: FakeCkan,
) -> None:
    add_job(action="status_show", sch_minutes=10, api_params={"id": "now"})
    [job_id] = clock.pending_job_ids()
    clock.make_due_now(job_id)

    done = worker_process("worker", "--burst", "--with-scheduler", "default_scheduler_q")

    assert done.returncode == 0, done.stderr
    [call] = fake_ckan.action_calls("status_show")
    assert call.json() == {"id": "now"} and call.header("Authorization") == TEST_GIS_API_KEY
    assert list_jobs()[0]["last_run"]["status"] == 200
    assert TEST_GIS_API_KEY not in done.stderr + done.stdout


def test_a_worker_starting_up_restores_a_lost_tick_job(
    runtime: Runtime, add_job: AddJob, clock: SchedulerClock, worker_process: RunCommand
) -> None:
    add_job(action="status_show", cron="0 4 * * *")
    [job_id] = clock.pending_job_ids()
    Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).delete()

    done = worker_process("worker", "--burst", "default_scheduler_q")

    assert done.returncode == 0, done.stderr
    assert clock.pending_job_ids() == [job_id]


def test_two_workers_fire_each_recurring_tick_exactly_once(
    runtime: Runtime,
    add_job: AddJob,
    list_jobs: ListJobs,
    clock: SchedulerClock,
    fake_ckan: FakeCkan,
    background_workers: Callable[..., list[subprocess.Popen[bytes]]],
) -> None:
    schedule_id = add_job(action="status_show", interval_minutes=1, api_params={"probe": 1})["id"]
    background_workers(2, "--with-scheduler", "default_scheduler_q")
    ticks = []

    for number in range(1, 4):
        [job_id] = wait_until(clock.pending_job_ids, what="the next tick to be scheduled")
        ticks.append(job_id)
        clock.make_due_now(job_id)
        fake_ckan.wait_for_action("status_show", count=number)
        wait_until(lambda n=number: list_jobs()[0]["runs"] == n, what=f"tick {number} to be recorded")
        wait_until(
            lambda: Job.fetch(ticks[-1], connection=runtime.redis, serializer=SERIALIZER).get_status() == "finished",
            what="the tick job to finish",
        )

    assert len(fake_ckan.action_calls("status_show")) == 3
    assert len(set(ticks)) == 3 and all(tick.startswith(store.JOB_ID_PREFIX + schedule_id) for tick in ticks)
    [job] = list_jobs()
    assert job["runs"] == 3 and job["last_run"]["status"] == 200
    [next_tick] = clock.pending_job_ids()
    assert next_tick not in ticks
