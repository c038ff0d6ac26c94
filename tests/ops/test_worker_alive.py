"""``./hdxrq.py worker-alive``, the health check of the worker and scheduler containers, on a real worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from core.monitor import local_worker_names
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT
from tests.waiting import wait_until


def test_alive_while_a_worker_of_this_host_runs_and_not_after(
    settings_env: dict[str, str],
    runtime: Runtime,
    worker_process: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    assert worker_process("worker-alive").returncode == 1
    env = {"PATH": os.environ.get("PATH", ""), **settings_env}
    worker = subprocess.Popen(
        [sys.executable, HDXRQ_PY, "worker", "event_q"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (name,) = wait_until(lambda: local_worker_names(runtime), timeout=60, what="the worker to register")
        alive = worker_process("worker-alive")
        assert alive.returncode == 0, alive.stderr
        assert alive.stdout.split() == [name]
        assert local_worker_names(runtime, hostname="another-host") == []
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    dead = worker_process("worker-alive")
    assert dead.returncode == 1 and "no worker" in dead.stderr


def test_not_alive_when_redis_is_unreachable(worker_process: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    down = worker_process("worker-alive", extra_env={"HDX_REDIS_PORT": "1"})
    assert down.returncode == 1 and "Redis unavailable" in down.stderr
