"""Jobs a worker took off a queue but never started (Redis went away in between) are put back, once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from core import orphans
from core.connections import queue
from core.runtime import Runtime

RunCommand = Callable[..., subprocess.CompletedProcess[str]]


def _queued_ids(runtime: Runtime, name: str) -> list[str]:
    return [job_id.decode() for job_id in runtime.redis.lrange(f"rq:queue:{name}", 0, -1)]


def test_a_job_popped_by_a_worker_that_died_is_requeued_after_two_sweeps(runtime: Runtime) -> None:
    waiting = queue("event_q", runtime.redis).enqueue("tests.jobs.record", "ran", "waiting")
    popped = queue("event_q", runtime.redis).enqueue("tests.jobs.record", "ran", "popped")
    assert runtime.redis.rpop("rq:queue:event_q") == popped.id.encode()  # the BLPOP whose worker then died
    now = time.time()

    assert orphans.sweep(runtime.redis, now=now) == []  # first seen
    assert orphans.sweep(runtime.redis, now=now + orphans.ORPHAN_AFTER_SEC - 1) == []  # not long enough
    assert orphans.sweep(runtime.redis, now=now + orphans.ORPHAN_AFTER_SEC) == [popped.id]

    assert _queued_ids(runtime, "event_q") == [popped.id, waiting.id]  # back at the front
    assert orphans.sweep(runtime.redis, now=now + 10 * orphans.ORPHAN_AFTER_SEC) == []  # and only once
    assert _queued_ids(runtime, "event_q") == [popped.id, waiting.id]
    assert not runtime.redis.exists(orphans.FIRST_SEEN_KEY)


def test_queued_jobs_on_their_queue_are_left_alone(runtime: Runtime) -> None:
    jobs = [queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "ran", str(n)) for n in range(3)]
    now = time.time()

    assert orphans.sweep(runtime.redis, now=now) == []
    assert orphans.sweep(runtime.redis, now=now + 3600) == []

    assert _queued_ids(runtime, "geo_q") == [job.id for job in jobs]


def test_a_job_its_worker_started_meanwhile_is_not_requeued(runtime: Runtime) -> None:
    job = queue("event_q", runtime.redis).enqueue("tests.jobs.record", "ran", "slow start")
    runtime.redis.lpop("rq:queue:event_q")
    now = time.time()
    assert orphans.sweep(runtime.redis, now=now) == []

    job.set_status(JobStatus.STARTED)  # the worker was only slow: it started the job after the first sweep

    assert orphans.sweep(runtime.redis, now=now + 3600) == []
    assert _queued_ids(runtime, "event_q") == []
    assert not runtime.redis.exists(orphans.FIRST_SEEN_KEY)


def test_a_job_left_on_an_intermediate_list_is_requeued_not_failed(runtime: Runtime) -> None:
    job = queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "ran", "single-queue worker")
    runtime.redis.lmove("rq:queue:geo_q", "rq:queue:geo_q:intermediate")  # how a one-queue worker takes it
    now = time.time()

    orphans.sweep(runtime.redis, now=now)
    assert orphans.sweep(runtime.redis, now=now + orphans.ORPHAN_AFTER_SEC) == [job.id]

    assert _queued_ids(runtime, "geo_q") == [job.id]
    assert runtime.redis.llen("rq:queue:geo_q:intermediate") == 0
    assert job.get_status(refresh=True) == JobStatus.QUEUED


def test_a_worker_sweeps_at_start_and_runs_the_requeued_job(runtime: Runtime, worker_process: RunCommand) -> None:
    job = queue("analytics_q", runtime.redis).enqueue("tests.jobs.record", "ran", "rescued")
    runtime.redis.lpop("rq:queue:analytics_q")
    # A sweep of another worker saw it orphaned two minutes ago.
    runtime.redis.hset(orphans.FIRST_SEEN_KEY, job.id, time.time() - 120)

    done = worker_process("worker", "--burst")

    assert done.returncode == 0, done.stderr
    assert runtime.redis.lrange("ran", 0, -1) == [b"rescued"]
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert f"job {job.id} was taken from analytics_q by a worker that died before starting it" in done.stderr


def test_a_job_whose_worker_died_before_forking_is_requeued_once_its_entry_expires(runtime: Runtime) -> None:
    job = queue("event_q", runtime.redis).enqueue("tests.jobs.record", "ran", "never forked")
    runtime.redis.lpop("rq:queue:event_q")
    # The worker registered the execution (rq does so before forking the work horse) and then died.
    registry = StartedJobRegistry("event_q", connection=runtime.redis)
    runtime.redis.zadd(registry.key, {f"{job.id}:dead-execution": time.time() + 90})
    now = time.time()
    assert orphans.sweep(runtime.redis, now=now) == []  # the entry still looks like a running job

    registry.cleanup(timestamp=now + 91)  # rq drops the expired entry but requeues only started jobs
    assert job.id not in registry and job.get_status(refresh=True) == JobStatus.QUEUED
    orphans.sweep(runtime.redis, now=now + 91)

    assert orphans.sweep(runtime.redis, now=now + 91 + orphans.ORPHAN_AFTER_SEC) == [job.id]
    assert _queued_ids(runtime, "event_q") == [job.id]
