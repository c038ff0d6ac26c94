"""A real CKAN 2.12 for the tests: its own virtualenv, PostgreSQL database, Redis database and Solr stand-in.

``./dev.sh`` installs CKAN with ckanext-hdxrq into ``.venv-ckan/`` (pins in ``ckanext-hdxrq/``). Debian has
no Solr and CKAN indexes synchronously on every dataset write, so :class:`FakeSolr` answers the few calls
CKAN makes: updates are accepted and every search finds nothing (search results cannot be tested here).
CKAN's database is one of its own on the shared PostgreSQL, never ``gis``: CKAN's test fixtures wipe a
whole database.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PG, REDIS_HOST, REDIS_PORT, ROOT, pg_connect
from tests.fakes import FakeService, Reply, json_reply

CKAN_VENV = ROOT / ".venv-ckan"
CKAN_PYTHON = CKAN_VENV / "bin" / "python"
CKAN_COMMAND = CKAN_VENV / "bin" / "ckan"
EXTENSION_DIR = ROOT / "ckanext-hdxrq"
START_TIMEOUT_SEC = 90
ADMIN = "ckanadmin"


class FakeSolr(FakeService):
    """Solr's HTTP API as far as CKAN 2.12 uses it: accept updates, find nothing, show a CKAN schema."""

    CORE = "/solr/ckan"
    SCHEMA = b'<?xml version="1.0" encoding="UTF-8"?><schema name="ckan-2.12" version="1.6"/>'

    def __init__(self) -> None:
        super().__init__("fake-solr")
        nothing_found = {
            "responseHeader": {"status": 0, "QTime": 0},
            "response": {"numFound": 0, "start": 0, "docs": []},
            "facet_counts": {"facet_queries": {}, "facet_fields": {}, "facet_ranges": {}},
        }
        for method in ("GET", "POST"):
            self.route(method, f"{self.CORE}/select/", json_reply(nothing_found))
            self.route(method, f"{self.CORE}/update/", json_reply({"responseHeader": {"status": 0, "QTime": 0}}))
        self.route("GET", f"{self.CORE}/schema", Reply(body=self.SCHEMA, headers={"Content-Type": "application/xml"}))

    @property
    def solr_url(self) -> str:
        return self.url + self.CORE


def require_ckan_venv() -> None:
    """Fail with the way out when CKAN's virtualenv is missing (``./dev.sh up`` installs it)."""
    if not CKAN_COMMAND.exists():
        raise AssertionError(f"{CKAN_COMMAND} is missing: run ./dev.sh up (or ./dev.sh test) to install CKAN")


@contextmanager
def ckan_database() -> Iterator[str]:
    """An empty PostgreSQL database of CKAN's own, dropped afterwards."""
    name = f"hdxrq_ckan_{uuid.uuid4().hex[:10]}"
    with pg_connect("postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with pg_connect("postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_ini(path: Path, *, database: str, site_url: str, solr_url: str, redis_db: int, **options: str) -> Path:
    """A ``ckan.ini`` for one test site (``options`` are more ``key = value`` lines of ``[app:main]``)."""
    storage = path.parent / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    main = {
        "use": "egg:ckan",
        "sqlalchemy.url": f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{database}",
        "ckan.site_url": site_url,
        "ckan.site_id": "hdxrq-test",
        "SECRET_KEY": secrets.token_hex(16),
        "solr_url": solr_url,
        "ckan.redis.url": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "ckan.storage_path": str(storage),
        **options,
    }
    lines = ["[app:main]", *(f"{key} = {value}" for key, value in main.items()), "", LOGGING]
    path.write_text("\n".join(lines))
    return path


LOGGING = """[loggers]
keys = root, ckanext

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_ckanext]
level = INFO
handlers = console
qualname = ckanext
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
"""


def ckan_environment() -> dict[str, str]:
    """A bare environment for CKAN's processes: nothing from the developer's shell overrides the ini."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


class CkanSite:
    """One CKAN site: set up with CKAN's own commands, served by ``ckan run -r -D``, used through its API."""

    def __init__(self, ini: Path, port: int) -> None:
        self.ini = ini
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = ini.parent / "ckan.log"
        self.token: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        """Run ``ckan -c <ini> ARGS`` and return its output."""
        done = subprocess.run(
            [str(CKAN_COMMAND), "-c", str(self.ini), *args],
            env=ckan_environment(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise AssertionError(f"ckan {' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def initialise(self) -> str:
        """Create the tables and a sysadmin; return an API token of that sysadmin."""
        self.cli("db", "init")
        self.cli("user", "add", ADMIN, f"email={ADMIN}@example.org", f"password={secrets.token_urlsafe(16)}")
        self.cli("sysadmin", "add", ADMIN)
        self.token = self.cli("user", "token", "add", ADMIN, "tests").strip().splitlines()[-1].strip()
        return self.token

    def start(self) -> None:
        """Serve the site (no reloader, no debugger) and wait until it answers."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(CKAN_COMMAND), "-c", str(self.ini), "run", "-H", "127.0.0.1", "-p", str(self.port), "-r", "-D"],
            env=ckan_environment(),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"ckan run exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/action/status_show", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)  # polling the port until CKAN listens
        raise AssertionError(f"CKAN did not answer within {START_TIMEOUT_SEC}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""

    def action(self, name: str, /, **data: Any) -> Any:
        """Call an action through the API as the sysadmin; fail the test on ``success: false``."""
        response = httpx.post(
            f"{self.url}/api/action/{name}", json=data, headers={"Authorization": self.token or ""}, timeout=60
        )
        body = response.json()
        if not body.get("success"):
            raise AssertionError(f"{name} failed (HTTP {response.status_code}): {body.get('error')}")
        return body["result"]
