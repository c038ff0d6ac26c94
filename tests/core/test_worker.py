from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from rq import Retry
from rq.job import Job
from rq.registry import StartedJobRegistry

from app.settings import Settings
from core.connections import SERIALIZER, queue
from core.queues import ALL_QUEUES
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT

RunCommand = Callable[..., subprocess.CompletedProcess[str]]


def test_a_real_worker_drains_a_queued_job(runtime: Runtime, worker_process: RunCommand) -> None:
    job = queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "marker", "ran-in-worker")

    done = worker_process("worker", "--burst")

    assert done.returncode == 0, done.stderr
    assert runtime.redis.lrange("marker", 0, -1) == [b"ran-in-worker"]
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "finished"
    # Every line logged inside the job carries its id.
    job_lines = [line for line in done.stderr.splitlines() if "recorded ran-in-worker" in line]
    assert job_lines and all(f"job={job.id}" in line for line in job_lines)


def test_event_jobs_run_in_the_worker_process_and_the_others_in_a_work_horse(
    runtime: Runtime, worker_process: RunCommand
) -> None:
    for name in ("event_q", "geo_q"):
        queue(name, runtime.redis).enqueue("tests.jobs.record_parent", f"parent:{name}")

    done = worker_process("worker", "--burst", "event_q", "geo_q")

    assert done.returncode == 0, done.stderr
    in_process = int(runtime.redis.lpop("parent:event_q"))
    forked = int(runtime.redis.lpop("parent:geo_q"))
    assert in_process == os.getpid()  # the job's parent is the worker's parent: this test
    assert forked not in (os.getpid(), 0)  # the job's parent is the worker


def test_an_event_job_killed_with_its_worker_is_run_again(runtime: Runtime, settings_env: dict[str, str]) -> None:
    job = queue("event_q", runtime.redis).enqueue(
        "tests.jobs.wait_for_go", "go", 60, retry=Retry(max=1), job_timeout=120
    )
    worker = subprocess.Popen(
        [sys.executable, HDXRQ_PY, "worker", "event_q"],
        env={"PATH": os.environ.get("PATH", ""), **settings_env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert runtime.redis.blpop(["go:started"], timeout=60) is not None
    finally:
        worker.kill()
        worker.wait()
    registry = StartedJobRegistry("event_q", connection=runtime.redis, serializer=SERIALIZER)
    assert job.id in registry.get_job_ids(cleanup=False)
    # Without a horse there is no heartbeat during the job: the entry lasts the job's timeout and a minute,
    # then RQ's registry cleaning (every worker's maintenance) hands the abandoned job to its retry.
    registry.cleanup(timestamp=time.time() + 119)
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "started"
    registry.cleanup(timestamp=time.time() + 181)
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() in ("queued", "scheduled")


def test_with_no_queue_named_a_worker_listens_on_every_queue(runtime: Runtime, worker_process: RunCommand) -> None:
    for name in ALL_QUEUES:
        queue(name, runtime.redis).enqueue("tests.jobs.record", "seen", name)

    done = worker_process("worker", "--burst")

    assert done.returncode == 0, done.stderr
    assert sorted(v.decode() for v in runtime.redis.lrange("seen", 0, -1)) == sorted(ALL_QUEUES)


def test_the_old_command_line_still_works(
    runtime: Runtime, settings_env: dict[str, str], worker_process: RunCommand
) -> None:
    queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "legacy", "geo")
    untouched = queue("analytics_q", runtime.redis).enqueue("tests.jobs.record", "legacy", "analytics")
    url = f"redis://{settings_env['HDX_REDIS_ADDR']}:{settings_env['HDX_REDIS_PORT']}/{settings_env['HDX_REDIS_GISDB']}"

    done = worker_process("worker", "--url", url, "--worker-ttl", "600", "--name", "legacy-1", "--burst", "geo_q")

    assert done.returncode == 0, done.stderr
    assert runtime.redis.lrange("legacy", 0, -1) == [b"geo"]  # only the queue named
    assert untouched.get_status(refresh=True) == "queued"


def test_jobs_are_stored_as_json_not_pickle(runtime: Runtime) -> None:
    job = queue("event_q", runtime.redis).enqueue("tests.jobs.record", "k", "v")
    raw = runtime.redis.hget(f"rq:job:{job.id}", "data")
    assert raw is not None
    import zlib

    decoded = json.loads(zlib.decompress(raw))
    assert decoded[0] == "tests.jobs.record" and decoded[2] == ["k", "v"]


def test_rq_commands_pass_through(runtime: Runtime, worker_process: RunCommand) -> None:
    queue("fs_check_q", runtime.redis).enqueue("tests.jobs.record", "x", "y")

    info = worker_process("info", "--only-queues", "fs_check_q")
    assert info.returncode == 0, info.stderr
    assert "fs_check_q" in info.stdout and "1" in info.stdout

    suspended = worker_process("suspend")
    assert suspended.returncode == 0 and runtime.redis.exists("rq:suspended")
    resumed = worker_process("resume")
    assert resumed.returncode == 0 and not runtime.redis.exists("rq:suspended")

    emptied = worker_process("empty", "fs_check_q")
    assert emptied.returncode == 0, emptied.stderr
    assert "1 jobs removed" in emptied.stdout
    assert queue("fs_check_q", runtime.redis).count == 0


def test_failed_jobs_can_be_requeued(runtime: Runtime, worker_process: RunCommand) -> None:
    job = queue("geo_q", runtime.redis).enqueue("tests.jobs.fail", "on purpose")
    assert worker_process("worker", "--burst", "geo_q").returncode == 0
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "failed"

    requeued = worker_process("requeue", "--queue", "geo_q", "--all")

    assert requeued.returncode == 0, requeued.stderr
    assert queue("geo_q", runtime.redis).job_ids == [job.id]


def test_config_masks_secrets(worker_process: RunCommand, settings_env: dict[str, str]) -> None:
    done = worker_process("config", extra_env={"HDX_GISDB_PASS": "pg-secret-81c3"})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert list(shown) == list(Settings.sections())  # grouped by section
    assert shown["ckan"]["HDX_GIS_API_KEY"] == "********"
    assert shown["postgis"]["HDX_GISDB_DB"] == settings_env["HDX_GISDB_DB"]
    assert shown["postgis"]["HDX_GISDB_PASS"] == "********"
    for secret in (settings_env["HDX_GIS_API_KEY"], settings_env["HDXRQ_ADMIN_TOKENS"], "pg-secret-81c3"):
        assert secret not in done.stdout


def test_a_bad_setting_stops_start_up_naming_the_variable(worker_process: RunCommand) -> None:
    done = worker_process("worker", "--burst", extra_env={"HDX_REDIS_PORT": "sixthousand"})
    assert done.returncode == 2
    assert "HDX_REDIS_PORT" in done.stderr and "Traceback" not in done.stderr


def test_error_codes_are_strings_whatever_the_exception_carries() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from core.worker import error_type_of
    from importapi.errors import ArchiveTooLarge

    # redis-py's exceptions have an enum in ``error_type``: it must not reach the job's JSON meta
    assert error_type_of(RedisConnectionError("refused")) == "ConnectionError"
    assert error_type_of(ArchiveTooLarge("too big")) == "archive-too-large"
