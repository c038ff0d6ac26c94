"""``serve`` (the API under gunicorn) and ``run`` (API + workers + scheduler in the foreground)."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from .cli import cli
from .runtime import Runtime

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HDXRQ_PY = str(ROOT / "hdxrq.py")
RESTART_DELAY_SEC = 2.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.pass_obj
def serve(runtime: Runtime, host: str, port: int) -> None:
    """Run the API under gunicorn (production WSGI server)."""
    settings = runtime.settings
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(fresh_metrics_dir(port)))
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:core.gunicorn_conf",
        "--chdir", str(ROOT),
        "--bind", f"{host}:{port}",
        "--workers", str(settings.api_workers),
        "--threads", str(settings.api_threads),
        "--worker-class", "gthread",
        "--graceful-timeout", str(int(settings.shutdown_grace_sec)),
        "--name", "hdxrq-api",
        "core.app:create_app()",
    ]  # fmt: skip
    # gunicorn replaces this process: signals reach its master directly, and the metrics directory
    # is in its environment before prometheus_client is first imported.
    os.execve(sys.executable, argv, env)


def fresh_metrics_dir(port: int) -> Path:
    """An empty directory for prometheus_client's multiprocess files of this API instance."""
    path = Path(tempfile.gettempdir()) / f"hdxrq-metrics-{port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port the API listens on.")
@click.option("--workers", "worker_count", type=int, default=None, help="Worker processes (HDXRQ_RUN_WORKERS).")
@click.pass_obj
def run(runtime: Runtime, host: str, port: int, worker_count: int | None) -> None:
    """Run the API, workers for every queue and the scheduler together; Ctrl-C stops them all."""
    count = worker_count or runtime.settings.run_workers
    commands = {"api": [HDXRQ_PY, "serve", "--host", host, "--port", str(port)]}
    for number in range(1, count + 1):
        commands[f"worker-{number}"] = [HDXRQ_PY, "worker", "--with-scheduler"]
    Supervisor(commands, grace=runtime.settings.shutdown_grace_sec).run()


def _terminate_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies, so no orphan outlives ``run``."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Starts child processes, restarts any that die, and stops them all on SIGINT/SIGTERM."""

    def __init__(self, commands: dict[str, list[str]], grace: float) -> None:
        self.commands = commands
        self.grace = grace
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for name in self.commands:
            self._start(name)
        log.info("running %s; Ctrl-C stops everything", ", ".join(self.commands))
        while not self.stopping.wait(0.5):
            self._restart_dead_children()
        self._stop_all()

    def _start(self, name: str) -> None:
        # A session of its own: Ctrl-C reaches only us, and we stop children in order.
        self.children[name] = subprocess.Popen(
            [sys.executable, *self.commands[name]],
            start_new_session=True,
            env=os.environ.copy(),
            preexec_fn=_terminate_with_parent,
        )

    def _restart_dead_children(self) -> None:
        for name, child in list(self.children.items()):
            if child.poll() is not None and not self.stopping.is_set():
                log.warning("%s exited with %s; restarting", name, child.returncode)
                time.sleep(RESTART_DELAY_SEC)
                self._start(name)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping.set()

    def _stop_all(self) -> None:
        log.info("stopping %d processes (grace %.0fs)", len(self.children), self.grace)
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", name, self.grace)
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
