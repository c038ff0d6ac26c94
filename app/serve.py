"""``serve`` (the API under uWSGI) and ``run`` (API + workers + scheduler in the foreground)."""

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

from core.queues import LANES, Lane, lane_layout, within
from core.runtime import Runtime
from core.settings import CoreSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HDXRQ_PY = str(ROOT / "hdxrq.py")
RESTART_DELAY_SEC = 2.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.pass_obj
def serve(runtime: Runtime, host: str, port: int) -> None:
    """Run the API under uWSGI (production WSGI server)."""
    uwsgi = Path(sys.executable).with_name("uwsgi")
    if not uwsgi.exists():
        raise click.ClickException(f"uWSGI is not installed next to {sys.executable} (pip install -r requirements.txt)")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(fresh_metrics_dir(port)))
    # uWSGI replaces this process: signals reach its master directly, and the metrics directory is in
    # its environment before prometheus_client is first imported. Its log goes to standard output:
    # send it where every other hdxrq log line goes.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.execve(uwsgi, [str(uwsgi), *uwsgi_options(runtime.settings, host, port)], env)


def fresh_metrics_dir(port: int) -> Path:
    """An empty directory for prometheus_client's multiprocess files of this API instance."""
    path = Path(tempfile.gettempdir()) / f"hdxrq-metrics-{port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def uwsgi_options(settings: CoreSettings, host: str, port: int) -> list[str]:
    """uWSGI's command line for the API (no secrets: the app reads its settings from the environment).

    uWSGI's HTTP router (an event loop in C) holds the client connections, keep-alive and slow ones
    included, and hands complete requests to single-threaded worker processes: a request never waits for
    another request's thread to release the GIL, which is what decides the tail latency of a millisecond
    endpoint (docs/analyticsapi.md).
    """
    grace = str(max(1, round(settings.workers.shutdown_grace_sec)))
    backend = worker_socket(port)
    options = [
        "--strict",
        "--master",
        "--http", f"{host}:{port}",
        "--socket", backend,
        "--http-to", backend,
        "--http-keepalive",
        "--http-auto-chunked",  # a streamed answer keeps the connection alive too
        "--http-timeout", str(ROUTER_TIMEOUT_SEC),
        "--http-buffer-size", str(ROUTER_BUFFER_BYTES),
        "--module", "app.factory:create_prefork_app()",
        "--chdir", str(ROOT),
        "--need-app",
        "--single-interpreter",
        "--enable-threads",
        *process_pool_options(settings),
        "--listen", str(listen_backlog()),
        "--buffer-size", "65535",  # request line + headers: long query strings, many headers
        "--die-on-term",
        # SIGTERM (systemd, Docker, ``run``): stop accepting, let in-flight requests finish, then exit.
        "--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
        "--worker-reload-mercy", grace,
        "--reload-mercy", grace,
        "--no-orphans",
        "--binary-path", sys.executable,  # a reload (SIGHUP) re-executes this interpreter (the venv), not the bare one
        "--disable-logging",  # no access log, as before; the app logs what matters
        "--ignore-sigpipe",
        "--ignore-write-errors",
        "--disable-write-exception",
        "--log-drain", UWSGI_NOISE,
    ]  # fmt: skip
    if settings.api.threads > 1:
        options += ["--threads", str(settings.api.threads)]
    return options


def worker_socket(port: int) -> str:
    """The socket between the router and the worker processes: a Linux abstract Unix socket.

    uWSGI's default is a TCP port on 127.0.0.1. Over TCP a 500 KB create-change-events body waited on
    delayed acknowledgements: one request in ten took 25-50 ms instead of 8 (docs/RELIABILITY.md). A Unix
    socket has no such wait and costs less per request; an abstract one leaves no file behind. It is
    reachable from this host only, like the TCP port it replaces, and named after the port and this
    process (which uWSGI's master becomes), so several APIs can run side by side.
    """
    return f"@hdxrq-api-{port}-{os.getpid()}"


def process_pool_options(settings: CoreSettings) -> list[str]:
    """``HDXRQ_API_WORKERS`` processes, and up to ``HDXRQ_API_MAX_WORKERS`` while every one is busy.

    A process holds a request until it is answered, including a job API request that waits for its job
    (``Prefer: wait``, up to two minutes): uWSGI's "spare" algorithm adds processes when all have been busy
    for a second (it checks once a second: about 3 s in all, measured) and stops the extra ones once they
    idle, so a few such requests cannot hold CKAN's notifications for the length of their wait.
    """
    if settings.api.max_workers <= settings.api.workers:
        return ["--processes", str(settings.api.workers)]
    return [
        "--processes", str(settings.api.max_workers),
        "--cheaper", str(settings.api.workers),
        "--cheaper-initial", str(settings.api.workers),
        "--cheaper-algo", "spare",
        "--cheaper-overload", "1",
        "--cheaper-step", "2",
    ]  # fmt: skip


ROUTER_TIMEOUT_SEC = 300
"""How long the router waits on a client or a worker: above the job API's longest ``Prefer: wait`` (120 s)."""

ROUTER_BUFFER_BYTES = 32 * 1024
"""The router's buffer per connection (uWSGI's default is a 4 KB page): a 500 KB create-change-events body
goes through in 16 reads and writes instead of 125, and the median such request took 7.1-7.4 ms instead
of 7.9-10 ms (sequential curl). 64 KB was faster still but made the router drop a keep-alive connection
after a body the app had to drain (tests/core/test_serve.py failed 2 runs in 3; 32 KB passed 13 of 13).
It costs 32 KB per open client connection."""

UWSGI_NOISE = r"running as root|use the --uid flag"
"""Start-up lines uWSGI repeats for every process that say nothing an operator can act on here."""


def listen_backlog(wanted: int = 1024) -> int:
    """The listen queue: ``wanted``, but never more than the kernel allows (uWSGI refuses to start then)."""
    try:
        allowed = int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 100
    return max(1, min(wanted, allowed))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port the API listens on.")
@click.option(
    "--workers", "worker_count", type=click.IntRange(min=1), default=None, help="Worker processes (HDXRQ_RUN_WORKERS)."
)
@click.pass_obj
def run(runtime: Runtime, host: str, port: int, worker_count: int | None) -> None:
    """Run the API, one worker per lane (events, analytics, geo; more for geo) and the scheduler together;
    Ctrl-C stops them all."""
    count = worker_count or runtime.settings.workers.run_count
    lanes = within(LANES, runtime.settings.workers.queues)
    if not lanes:
        raise click.UsageError("QUEUES names no queue of any lane: run would start no worker")
    commands = {"api": [HDXRQ_PY, "serve", "--host", host, "--port", str(port)], **worker_commands(count, lanes)}
    Supervisor(commands, grace=runtime.settings.workers.shutdown_grace_sec).run()


def worker_commands(count: int, lanes: tuple[Lane, ...] = LANES) -> dict[str, list[str]]:
    """The workers ``run`` starts, by name: ``count`` workers laid out in ``lanes`` (:func:`core.queues.lane_layout`;
    the lanes as ``QUEUES`` limits them), each with rq's scheduler (one of them holds it at a time)."""
    layout = lane_layout(count, lanes)
    if any(len(shared) > 1 for shared in layout):
        log.warning("%d worker(s) cannot keep the %d lanes apart: one worker takes several", count, len(lanes))
    return {
        f"worker-{number} ({'+'.join(lane.name for lane in lanes)})": [
            HDXRQ_PY,
            "worker",
            "--with-scheduler",
            *lane_arguments(lanes),
        ]
        for number, lanes in enumerate(layout, start=1)
    }


def lane_arguments(lanes: tuple[Lane, ...]) -> list[str]:
    """``--lane NAME`` for each lane."""
    return [argument for lane in lanes for argument in ("--lane", lane.name)]


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
