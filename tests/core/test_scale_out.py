"""Several worker processes draining one backlog: every job runs exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from core.connections import queue
from core.queues import ALL_QUEUES
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT

JOBS = 240
WORKERS = 4


def test_four_workers_drain_a_mixed_backlog_without_running_a_job_twice(
    runtime: Runtime, settings_env: dict[str, str]
) -> None:
    for number in range(JOBS):
        name = ALL_QUEUES[number % len(ALL_QUEUES)]
        queue(name, runtime.redis).enqueue("tests.jobs.record", "runs", f"job-{number}")

    env = {"PATH": os.environ["PATH"], **settings_env}
    workers = [
        subprocess.Popen(
            [sys.executable, HDXRQ_PY, "worker", "--burst", "--name", f"scale-{index}"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(WORKERS)
    ]
    assert [worker.wait(timeout=240) for worker in workers] == [0] * WORKERS

    runs = Counter(value.decode() for value in runtime.redis.lrange("runs", 0, -1))
    assert len(runs) == JOBS
    assert set(runs.values()) == {1}
    assert all(queue(name, runtime.redis).count == 0 for name in ALL_QUEUES)
