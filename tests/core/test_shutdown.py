"""A worker asked to stop finishes its job, or after the grace period hands it back to the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from rq.job import Job

from core.connections import SERIALIZER, queue
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT


def start_worker(settings_env: dict[str, str], grace: str) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], **settings_env, "HDXRQ_SHUTDOWN_GRACE_SEC": grace}
    return subprocess.Popen(
        [sys.executable, HDXRQ_PY, "worker", "--burst", "geo_q"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_stop_lets_the_current_job_finish(runtime: Runtime, settings_env: dict[str, str]) -> None:
    job = queue("geo_q", runtime.redis).enqueue("tests.jobs.wait_for_go", "go-1", 120)
    queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "after", "must-not-run-here")
    worker = start_worker(settings_env, grace="120")
    try:
        assert runtime.redis.blpop(["go-1:started"], timeout=60)
        worker.send_signal(signal.SIGTERM)
        runtime.redis.rpush("go-1", "go")  # the job may finish within the grace period
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
        worker.wait()
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "finished"
    assert queue("geo_q", runtime.redis).count == 1  # the worker stopped instead of taking more work


def test_a_job_past_the_grace_period_is_requeued(runtime: Runtime, settings_env: dict[str, str]) -> None:
    job = queue("geo_q", runtime.redis).enqueue("tests.jobs.wait_for_go", "go-2", 300)
    worker = start_worker(settings_env, grace="1")
    try:
        assert runtime.redis.blpop(["go-2:started"], timeout=60)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
        worker.wait()
    assert runtime.redis.llen("go-2:finished") == 0  # the job was stopped, not left to finish
    requeued = Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER)
    assert requeued.get_status() == "queued"
    assert queue("geo_q", runtime.redis).job_ids == [job.id]
