"""Scheduler test helpers: rq's scheduler step under a clock the test controls, real background workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rq.scheduler
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from core.connections import SERIALIZER
from core.queues import QueueName
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT


class SchedulerClock:
    """Runs the step a worker's rq scheduler runs every second, as of a time the test chooses."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runtime = runtime
        self.monkeypatch = monkeypatch

    def enqueue_due(self, at: datetime) -> None:
        """Move every scheduled job due at ``at`` onto its queue (rq's own ``enqueue_scheduled_jobs``)."""
        with self.monkeypatch.context() as patch:
            patch.setattr(rq.scheduler, "current_timestamp", lambda: int(at.timestamp()))
            scheduler = RQScheduler([QueueName.SCHEDULER], connection=self.runtime.redis, serializer=SERIALIZER)
            scheduler.prepare_registries([QueueName.SCHEDULER])
            scheduler.enqueue_scheduled_jobs()

    def make_due_now(self, job_id: str) -> None:
        """Move a scheduled job to now: what waiting for its time would do, minus the waiting."""
        registry = ScheduledJobRegistry(QueueName.SCHEDULER, connection=self.runtime.redis, serializer=SERIALIZER)
        registry.schedule(Job.fetch(job_id, connection=self.runtime.redis, serializer=SERIALIZER), datetime.now(UTC))

    def pending_job_ids(self) -> list[str]:
        """Ids of the jobs waiting in rq's scheduled registry of ``default_scheduler_q``."""
        registry = ScheduledJobRegistry(QueueName.SCHEDULER, connection=self.runtime.redis, serializer=SERIALIZER)
        return registry.get_job_ids()


@pytest.fixture
def clock(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> SchedulerClock:
    return SchedulerClock(runtime, monkeypatch)


@pytest.fixture
def add_job(client: FlaskClient, admin_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """POST add_job with the admin token and return the answer's JSON."""

    def post(**body: Any) -> dict[str, Any]:
        body = {"method": "post", "sch_minutes": 0, "sch_hours": 0, "sch_days": 0, **body}
        response = client.post("/api/scheduler/add_job", json=body, headers=admin_headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()  # type: ignore[no-any-return]

    return post


@pytest.fixture
def list_jobs(client: FlaskClient, admin_headers: dict[str, str]) -> Callable[[], list[dict[str, Any]]]:
    def get() -> list[dict[str, Any]]:
        response = client.get("/api/scheduler/list_jobs", headers=admin_headers)
        assert response.status_code == 200
        body = response.get_json()
        assert body["success"] is True
        return body["jobs"]  # type: ignore[no-any-return]

    return get


@pytest.fixture
def background_workers(
    settings_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., list[subprocess.Popen[bytes]]]]:
    """Start real ``./hdxrq.py worker`` processes that keep running until the test ends.

    Each leads a process group of its own (with its scheduler process and work horses), which the test
    may kill whole and which is stopped whole at the end. Logs: ``worker-<n>.log`` in the test's folder.
    """
    processes: list[subprocess.Popen[bytes]] = []

    def start(count: int, *args: str) -> list[subprocess.Popen[bytes]]:
        env = {"PATH": os.environ.get("PATH", ""), **settings_env}
        for _ in range(count):
            with (tmp_path / f"worker-{len(processes)}.log").open("wb") as log_file:
                argv = [sys.executable, HDXRQ_PY, "worker", *args]
                output = {"stdout": log_file, "stderr": subprocess.STDOUT}
                processes.append(subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True, **output))
        return processes[-count:]

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
