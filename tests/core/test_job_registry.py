"""Workers run registered job functions only, looked up by exact name: the attacker's side.

Whoever can write to the queue Redis can put any job there. These tests do exactly that, with names that
a prefix test or RQ's own resolution would have let through, and prove with marker files that nothing ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from rq.callbacks import Callback
from rq.job import Job

from app.settings import Settings
from app.slices import compose
from core.connections import SERIALIZER, queue
from core.registry import ForbiddenJobFunction, Registry
from core.runtime import Runtime
from processes.catalog import PROCESSES

RunCommand = Callable[..., subprocess.CompletedProcess[str]]

SERVICE_JOBS = {
    "importapi.tasks.import_resource",
    "importapi.tasks.send_callback",
    "analyticsapi.tasks.drain",
    "eventsapi.tasks.publish_change_events",
    "eventsapi.tasks.check_file_structure",
    "eventsapi.tasks.send_fs_check_result",
    "scheduler.tasks.run_scheduled_call",
    "tiles.tasks.prerender_layer",
    "analyticsapi.tasks.buffer_event",
    "processes.tasks.send_analytics_event",  # the name buffer_event had before: jobs queued then still run
}


SERVICE_CALLBACKS = {"importapi.tasks.import_gave_up", "eventsapi.tasks.check_gave_up"}


def test_the_service_registers_exactly_its_job_functions_and_callbacks() -> None:
    registry = compose(Settings.from_env({}))
    assert registry.job_names() == SERVICE_JOBS
    assert registry.callback_names() == SERVICE_CALLBACKS


def test_every_process_names_registered_job_functions() -> None:
    names = compose(Settings.from_env({})).job_names()
    assert {function for process in PROCESSES for function in process.job_functions} <= names


@pytest.mark.parametrize(
    "name",
    [
        "importapi.ogr.os.system",
        "importapi.os.system",
        "scheduler.tasks.subprocess.run",
        "importapi.tasks.import_resource.__globals__",
        "importapi.tasks..import_resource",
        ".importapi.tasks.import_resource",
        "importapi.tasks.import_resource.",
        "importapi.tasks",
        "importapi",
        "os.system",
        "",
        None,
        ["importapi.tasks.import_resource"],
    ],
)
def test_a_name_that_is_not_registered_exactly_is_refused(name: object) -> None:
    with pytest.raises(ForbiddenJobFunction) as refused:
        compose(Settings.from_env({})).job_function(name)
    assert refused.value.error_type == "forbidden-job-function"


def test_looking_a_name_up_imports_nothing() -> None:
    module = "tests.core.never_imported_job_module"
    with pytest.raises(ForbiddenJobFunction):
        Registry().job_function(f"{module}.run")
    assert module not in sys.modules


def test_an_empty_registry_runs_nothing() -> None:
    with pytest.raises(ForbiddenJobFunction):
        Registry().job_function("importapi.tasks.import_resource")


def test_job_functions_and_callbacks_are_not_interchangeable() -> None:
    registry = compose(Settings.from_env({}))
    with pytest.raises(ForbiddenJobFunction):
        registry.job_function("importapi.tasks.import_gave_up")
    with pytest.raises(ForbiddenJobFunction):
        registry.callback_function("importapi.tasks.import_resource")


def _plant(runtime: Runtime, queue_name: str, function: str, *args: object, **options: object) -> Job:
    """Write a job naming ``function`` into the queue Redis, as anyone with write access could."""
    return queue(queue_name, runtime.redis).enqueue(function, *args, **options)


def _plant_method_call(runtime: Runtime, queue_name: str, marker: Path) -> Job:
    """A job whose stored data asks RQ to call a method of a stored object (``instance``)."""
    job = _plant(runtime, queue_name, "tests.jobs.record", "marker", "method")
    data = ["format", "{0}", [str(marker)], {}]  # RQ would call "{0}".format(...)
    runtime.redis.hset(job.key, "data", zlib.compress(json.dumps(data).encode()))
    return job


def test_jobs_planted_in_redis_run_nothing(runtime: Runtime, worker_process: RunCommand, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    touch = f"touch {marker}"
    planted = [
        _plant(runtime, "geo_q", "importapi.ogr.os.system", touch),
        _plant(runtime, "event_q", "importapi.os.system", touch),
        _plant(runtime, "geo_q", "scheduler.tasks.subprocess.run", ["touch", str(marker)]),
        _plant(runtime, "event_q", "builtins.exec", f"open({str(marker)!r}, 'w')"),
        _plant(runtime, "geo_q", "importapi.tasks.import_resource.__globals__", touch),
        _plant(runtime, "event_q", "importapi..tasks.import_resource", touch),
        _plant(runtime, "geo_q", "rq.job.Job.fetch", touch),
        _plant(runtime, "event_q", "importapi.tasks.import_gave_up", touch),  # a callback, not a job function
        # Registered functions carrying callbacks that are not registered ones: neither of them runs.
        _plant(runtime, "geo_q", "tests.jobs.record", "ran", "success", on_success=Callback("os.system")),
        _plant(runtime, "event_q", "tests.jobs.fail", "boom", on_failure=Callback("os.system")),
        _plant(runtime, "event_q", "tests.jobs.fail", "boom", on_failure=Callback("importapi.tasks.import_resource")),
        _plant(runtime, "geo_q", "tests.jobs.record", "ran", "stopped", on_stopped=Callback("os.system")),
        _plant(runtime, "event_q", "tests.jobs.fail", "boom", on_failure=Callback("tests.jobs.record")),
        _plant_method_call(runtime, "event_q", marker),
    ]
    legit = _plant(runtime, "geo_q", "tests.jobs.record", "ran", "legit")

    done = worker_process("worker", "--burst", "geo_q", "event_q")

    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert runtime.redis.lrange("ran", 0, -1) == [b"legit"]  # the worker went on, and ran what is registered
    for job in planted:
        refused = Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER)
        assert refused.get_status() == "failed", job.func_name
        assert refused.meta["error_type"] == "forbidden-job-function", (job.func_name, refused.meta)
    assert Job.fetch(legit.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "finished"


def test_a_worker_told_to_use_rqs_own_job_class_still_runs_registered_functions_only(
    runtime: Runtime, worker_process: RunCommand, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job = _plant(runtime, "geo_q", "importapi.ogr.os.system", f"touch {marker}")

    done = worker_process("worker", "--burst", "--job-class", "rq.job.Job", "geo_q")

    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert Job.fetch(job.id, connection=runtime.redis, serializer=SERIALIZER).get_status() == "failed"
