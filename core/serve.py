"""``serve`` (the API under gunicorn) and ``run`` (API + workers + scheduler in the foreground)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from .cli import cli
from .runtime import Runtime

log = logging.getLogger(__name__)

HDXRQ_PY = str(Path(__file__).resolve().parent.parent / "hdxrq.py")
RESTART_DELAY_SEC = 2.0


class ApiServer(BaseApplication):  # type: ignore[misc]
    """gunicorn running :func:`core.app.create_app` with threads, graceful on SIGTERM."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        self.runtime = runtime
        self.options = {
            "bind": f"{host}:{port}",
            "workers": runtime.settings.api_workers,
            "threads": runtime.settings.api_threads,
            "worker_class": "gthread",
            "graceful_timeout": int(runtime.settings.shutdown_grace_sec),
            "timeout": 60,
            "keepalive": 5,
            "proc_name": "hdxrq-api",
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, str(value))  # gunicorn validates settings as if read from its command line

    def load(self) -> Any:
        from .app import create_app

        return create_app(runtime=Runtime(self.runtime.settings))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.pass_obj
def serve(runtime: Runtime, host: str, port: int) -> None:
    """Run the API under gunicorn (production WSGI server)."""
    ApiServer(runtime, host, port).run()


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
            [sys.executable, *self.commands[name]], start_new_session=True, env=os.environ.copy()
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
