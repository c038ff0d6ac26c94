"""Fixtures of the reliability suite: real processes, private servers that tests may kill, and rq's clock.

* ``spawn(...)`` starts a real ``./hdxrq.py`` process (worker, serve) with the test's environment, its
  output in a log file of the test; every process still running is SIGKILLed (with its children) at the end.
* ``private_redis`` / ``private_postgres`` are servers of the test's own on free loopback ports, so a test can
  restart or stop them without disturbing the shared services other developers' tests use.
* ``advance_rq_clock`` does what rq's maintenance and scheduler would do once some time has passed (abandoned
  jobs of dead workers retried, scheduled retries enqueued), with rq's own code and an injected clock, so a
  test of a ten-minute outage does not take ten minutes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from redis import Redis
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import parse_composite_key

from core import orphans, procs
from core.connections import SERIALIZER, queue
from core.procs import descendants
from core.queues import ALL_QUEUES
from tests.conftest import HDXRQ_PY, ROOT, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HEARTBEAT_MARGIN_SEC = 60
"""rq keeps a running job's entry ``monitoring interval (30 s) + 60 s`` ahead of each heartbeat."""
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"


# --- waiting ---


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail the test saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- real processes ---


@dataclass
class Proc:
    """A real ``./hdxrq.py`` process of the test."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and everything below it, as an out-of-memory killer or a power cut would."""
        for pid in [*descendants(self.pid), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait (a graceful stop)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


@pytest.fixture
def spawn(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``spawn("worker", "geo_q", extra_env={...})``: a real ``./hdxrq.py`` process with the test's settings."""
    started: list[Proc] = []

    def start(*args: str, extra_env: dict[str, str] | None = None, name: str | None = None) -> Proc:
        env = {"PATH": os.environ.get("PATH", ""), **settings_env, **(extra_env or {})}
        log = tmp_path / f"{name or args[0]}-{len(started)}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, HDXRQ_PY, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(popen, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.kill()


def serve_api(spawn: Callable[..., Proc], extra_env: dict[str, str] | None = None) -> tuple[Proc, str]:
    """Start ``./hdxrq.py serve`` (uWSGI) on a free port; its process and base URL once it answers."""
    import httpx

    port = free_port()
    env = {"HDXRQ_API_WORKERS": "1", "HDXRQ_API_THREADS": "4", **(extra_env or {})}
    proc = spawn("serve", "--port", str(port), extra_env=env, name="api")
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.alive(), proc.output()
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, "the API to answer", interval=0.1)
    return proc, base


# --- rq's clock ---


def advance_rq_clock(redis: Redis, seconds: float, queue_names: Iterable[str] = ALL_QUEUES) -> None:
    """Act as rq's maintenance and scheduler would ``seconds`` from now.

    Jobs whose worker stopped sending heartbeats by then are handled as abandoned (retried when they have
    retries left, else failed), jobs taken off a queue by a worker that died before starting them are put
    back (the workers' orphan sweep, core.orphans), and scheduled jobs (rq ``Retry`` intervals,
    ``enqueue_in``) due by then are put on their queues for the real workers to run.
    """
    future = time.time() + seconds
    names = list(queue_names)
    for name in names:
        registry = StartedJobRegistry(queue=queue(name, redis))
        _heartbeats_of_live_workers(redis, registry, future)
        registry.cleanup(timestamp=future)
    orphans.sweep(redis, now=time.time())
    orphans.sweep(redis, now=future)
    scheduler = RQScheduler(names, connection=redis, serializer=SERIALIZER)
    try:
        with mock.patch("rq.scheduler.current_timestamp", lambda: int(future)):
            scheduler.prepare_registries(names)
            scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.connection.close()  # rq's scheduler opens a connection pool of its own
        scheduler.connection.connection_pool.disconnect()


def _heartbeats_of_live_workers(redis: Redis, registry: StartedJobRegistry, until: float) -> None:
    """Extend the entries of jobs whose worker process is alive, as its heartbeats would have meanwhile:
    only the jobs of dead workers are abandoned when the clock moves."""
    now = time.time()
    for member, score in redis.zrangebyscore(registry.key, 0, until, withscores=True):
        if _worker_alive(redis, _execution_worker(redis, member.decode()), score - now):
            redis.zadd(registry.key, {member: until + 120}, xx=True)


def _execution_worker(redis: Redis, composite_key: str) -> str | None:
    """The worker running an execution: named by the execution itself (written before the worker forks),
    else by the job (written by the work horse)."""
    name = redis.hget(f"rq:execution:{composite_key}", "worker_name")
    if name:
        return name.decode()
    job_id, _ = parse_composite_key(composite_key)
    job = Job.fetch_many([job_id], connection=redis, serializer=SERIALIZER)[0]
    return job.worker_name if job is not None else None


def _worker_alive(redis: Redis, name: str | None, heartbeat_left: float) -> bool:
    """Whether the worker running a job is alive: by its process when its record names one; otherwise (a
    worker whose record is gone while its work horse still runs the job) by a heartbeat in the last 30 s."""
    pid = redis.hget(f"rq:worker:{name}", "pid") if name else None
    if pid is None:  # (an entry this function extended before is far beyond a real heartbeat: not fresh)
        return HEARTBEAT_MARGIN_SEC < heartbeat_left <= HEARTBEAT_MARGIN_SEC + 40
    return procs.alive(int(pid))


# --- private Redis ---


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own with AOF persistence, which the test may stop and restart."""

    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--databases", "16"]
        if self.password:
            argv += ["--requirepass", self.password]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 30, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """A graceful stop (SIGTERM): Redis writes and syncs its AOF before exiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def client(self, db: int = 0) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, db=db, password=self.password, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``private_redis(password=None)``: start a private Redis (AOF on) in the test's directory."""
    servers: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory, password=password).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


# --- private PostgreSQL ---


@dataclass
class PostgresServer:
    """A PostgreSQL 15 cluster of the test's own (initdb in a temp dir, run as ``postgres``), with PostGIS."""

    directory: Path
    superuser_password: str
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> PostgresServer:
        password_file = self.directory / "superuser-password"
        password_file.write_text(self.superuser_password)
        shutil.chown(password_file, "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
            f"--pwfile={password_file}", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.directory / "postgres.log"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def connect(self, dbname: str = "postgres", **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.superuser_password,
            dbname=dbname, connect_timeout=5, **kwargs,
        )  # fmt: skip

    def create_gis_database(self, name: str, user: str, password: str) -> None:
        """A database owned by ``user`` (a plain login role) with PostGIS, as ``./dev.sh`` prepares ``gis``."""
        with self.connect(autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(user), psycopg.sql.Literal(password)
            ))  # fmt: skip
            admin.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(user)
            ))  # fmt: skip
        with self.connect(name, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")


@pytest.fixture
def private_postgres() -> Iterator[Callable[[], PostgresServer]]:
    """``private_postgres()``: a started PostgreSQL cluster of the test's own, removed afterwards."""
    servers: list[PostgresServer] = []

    def start() -> PostgresServer:
        directory = Path(tempfile.mkdtemp(prefix="hdxrq-reliability-pg-"))
        shutil.chown(directory, "postgres")
        server = PostgresServer(directory, superuser_password=f"superuser-{os.urandom(8).hex()}").init()
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(server.directory, ignore_errors=True)


# --- outside traffic guard ---


def netguard_env(log: Path) -> dict[str, str]:
    """Environment for a process whose sockets may reach loopback addresses only.

    ``netguard/sitecustomize.py`` is loaded at interpreter start; any ``connect()`` to an address outside
    127.0.0.0/8 and ::1 is refused before a packet leaves and written to ``log``: a test of hostile URLs
    can never send traffic off the machine, and it sees if the code under test tried.
    """
    return {"PYTHONPATH": str(NETGUARD_DIR), "HDXRQ_TEST_NETGUARD_LOG": str(log)}
