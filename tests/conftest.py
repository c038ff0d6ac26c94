"""Fixtures: real Redis and PostGIS (started by ``./dev.sh test``), fake outside services, app and workers.

Layers: ``redis_dbs`` and ``postgis_db`` → ``settings_env`` → ``settings`` → ``runtime`` → ``app`` →
``client``; ``fake_ckan`` is a recording CKAN; ``burst_worker`` drains queues in-process and
``worker_process`` runs a real ``./hdxrq.py worker --burst``.

Each test gets two Redis databases of its own (queues and event stream), claimed through lock keys in db 0
so that parallel test sessions never share one, and flushed afterwards. Each session gets a fresh PostGIS
database cloned from the ``hdxrq_template`` database that ``./dev.sh`` prepares.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker

from app.factory import create_app
from app.settings import Settings
from app.slices import compose
from core import registry
from core import runtime as runtime_module
from core.connections import SERIALIZER, queue
from core.jobs import HdxJob
from core.procs import descendants
from core.queues import ALL_QUEUES
from core.runtime import Runtime
from tests.fakes import FakeCkan

ROOT = Path(__file__).resolve().parent.parent
HDXRQ_PY = str(ROOT / "hdxrq.py")


def kill_process_tree(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process and everything below it (rq's work horse leads a process group of its own), and reap
    it: for workers left busy on purpose (a download that hangs) that nothing needs to wait for."""
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REDIS_HOST = os.environ.get("HDX_REDIS_ADDR", "127.0.0.1")
REDIS_PORT = int(os.environ.get("HDX_REDIS_PORT", "6379"))
PG = {
    "host": os.environ.get("HDX_GISDB_ADDR", "127.0.0.1"),
    "port": os.environ.get("HDX_GISDB_PORT", "5432"),
    "user": os.environ.get("HDX_GISDB_USER", "gis"),
    "password": os.environ.get("HDX_GISDB_PASS", "gis"),
}
TEMPLATE_DB = "hdxrq_template"
FIRST_TEST_DB, LAST_TEST_DB = 16, 127
LOCK_TTL_SEC = 3600

TEST_GIS_API_KEY = "test-gis-api-key-3f9a1c"
TEST_FSCHECK_API_KEY = "test-fscheck-api-key-77b2e0"
TEST_ADMIN_TOKEN = "test-admin-token-5d1e8b"


# --- hygiene ---


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's shell: tests build their settings explicitly."""
    for name in Settings.variable_names() | {"HDXRQ_CONFIG_FILE", "RQ_REDIS_URL"}:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


# --- Redis ---


@pytest.fixture(scope="session")
def redis_admin() -> Iterator[Redis]:
    client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    try:
        client.ping()
    except Exception as error:  # pragma: no cover - environment problem, explained
        pytest.exit(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} ({error}); use ./dev.sh test", 2)
    yield client
    client.close()


def _claim_database(admin: Redis) -> int:
    # Round robin rather than the lowest free one: a process that outlives its test (a work horse finishing
    # its last log line) must not write into the database the very next test has just claimed.
    count = LAST_TEST_DB - FIRST_TEST_DB + 1
    start = int(admin.incr("hdxrq:test-db-next"))
    for offset in range(count):
        db = FIRST_TEST_DB + (start + offset) % count
        if admin.set(f"hdxrq:test-db-lock:{db}", os.getpid(), nx=True, ex=LOCK_TTL_SEC):
            Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()  # leftovers of a killed run
            return db
    raise RuntimeError("no free Redis test database")


def _release_database(admin: Redis, db: int) -> None:
    Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    admin.delete(f"hdxrq:test-db-lock:{db}")


@pytest.fixture
def redis_dbs(redis_admin: Redis) -> Iterator[tuple[int, int]]:
    """Two empty Redis databases of this test's own: (queues, event stream)."""
    claimed = (_claim_database(redis_admin), _claim_database(redis_admin))
    yield claimed
    for db in claimed:
        _release_database(redis_admin, db)


# --- PostGIS ---


def pg_connect(dbname: str, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(dbname=dbname, connect_timeout=5, **PG, **kwargs)


@pytest.fixture(scope="session")
def postgis_db() -> Iterator[str]:
    """A fresh PostGIS database for this test session."""
    name = f"hdxrq_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = pg_connect("postgres", autocommit=True)
    except psycopg.OperationalError as error:  # pragma: no cover - environment problem, explained
        pytest.exit(f"PostgreSQL is not reachable ({error}); use ./dev.sh test", 2)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}')
    yield name
    with pg_connect("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg(postgis_db: str) -> Iterator[psycopg.Connection]:
    """A connection to the session's PostGIS database, for assertions."""
    with pg_connect(postgis_db, autocommit=True) as conn:
        yield conn


# --- outside services ---


@pytest.fixture
def fake_ckan() -> Iterator[FakeCkan]:
    with FakeCkan() as ckan:
        yield ckan


# --- settings, runtime, app ---


@pytest.fixture
def settings_env(redis_dbs: tuple[int, int], postgis_db: str, fake_ckan: FakeCkan, tmp_path: Path) -> dict[str, str]:
    """The environment a process of this test runs with (tests may add to it before building settings)."""
    rq_db, stream_db = redis_dbs
    return {
        "HDX_REDIS_ADDR": REDIS_HOST,
        "HDX_REDIS_PORT": str(REDIS_PORT),
        "HDX_REDIS_GISDB": str(rq_db),
        "REDIS_STREAM_HOST": REDIS_HOST,
        "REDIS_STREAM_PORT": str(REDIS_PORT),
        "REDIS_STREAM_DB": str(stream_db),
        "HDX_GISDB_ADDR": PG["host"],
        "HDX_GISDB_PORT": PG["port"],
        "HDX_GISDB_DB": postgis_db,
        "HDX_GISDB_USER": PG["user"],
        "HDX_GISDB_PASS": PG["password"],
        "CKAN_API_BASE_URL": fake_ckan.base_url,
        "HDX_GIS_API_KEY": TEST_GIS_API_KEY,
        "HDX_FSCHECK_API_KEY": TEST_FSCHECK_API_KEY,
        "HDX_DOMAIN": "127.0.0.1",
        "HDXRQ_ADMIN_TOKENS": TEST_ADMIN_TOKEN,
        "HDXRQ_DOWNLOAD_ALLOWLIST": "127.0.0.1",
        "HDX_GIS_TMP": str(tmp_path / "gis-tmp"),
        "HDXRQ_EXTRA_JOB_MODULES": "tests.jobs",
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings.from_env(settings_env)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """The process runtime job functions see, built from this test's settings."""
    rt = runtime_module.install(Runtime(settings))
    yield rt
    rt.close()
    runtime_module._current = None


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    flask_app = create_app(runtime=runtime)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


# --- workers ---


@pytest.fixture
def burst_worker(runtime: Runtime) -> Callable[..., bool]:
    """Drain queues in this process with RQ's SimpleWorker (no fork), returning whether it did any work.

    Jobs are the service's own (:class:`HdxJob`): only functions of the job registry run, as in a worker.
    """
    registry.install(compose(runtime.settings))

    def drain(*queue_names: str, max_jobs: int | None = None) -> bool:
        names = queue_names or ALL_QUEUES
        worker = SimpleWorker(
            [queue(name, runtime.redis) for name in names],
            connection=runtime.redis,
            serializer=SERIALIZER,
            job_class=HdxJob,
        )
        return bool(worker.work(burst=True, max_jobs=max_jobs, with_scheduler=False))

    return drain


@pytest.fixture
def worker_process(settings_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a real ``./hdxrq.py`` command (for example ``worker --burst``) with this test's environment."""

    def run(
        *args: str, timeout: float = 120, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), **settings_env, **(extra_env or {})}
        return subprocess.run(
            [sys.executable, HDXRQ_PY, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )

    return run
