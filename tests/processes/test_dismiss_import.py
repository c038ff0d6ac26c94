"""Dismissing a running geopreview import stops its ogr2ogr too."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from flask.testing import FlaskClient

from core.runtime import Runtime
from tests.conftest import PG
from tests.fakes import FakeService, Reply
from tests.processes.test_ogcapi import running_worker, wait_until_ended
from tests.waiting import wait_until

PLACEMARKS = "".join(
    f"<Placemark><name>p{i}</name><Point><coordinates>{i % 90},{i % 45}</coordinates></Point></Placemark>"
    for i in range(50)
)
# KML goes through ogr2ogr (simple GeoJSON has a faster path of its own).
KML = f'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>{PLACEMARKS}</Document></kml>'


def ogr2ogr_pids(database: str) -> set[int]:
    """ogr2ogr processes loading into ``database`` (other test sessions on the machine run their own)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            ours = any(database.encode() in arg for arg in argv)
            if argv and os.path.basename(argv[0]) == b"ogr2ogr" and ours and state != "Z":
                pids.add(int(entry.name))
    return pids


@contextmanager
def spatial_ref_sys_locked(database: str) -> Iterator[None]:
    """Hold spatial_ref_sys (owned by the superuser): ogr2ogr looks its SRS up there, so its load waits."""
    psql = subprocess.Popen(
        ["su", "postgres", "-c", f"psql -q -v ON_ERROR_STOP=1 -p {PG['port']} -d {database}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert psql.stdin is not None and psql.stdout is not None
    psql.stdin.write("BEGIN;\nLOCK TABLE spatial_ref_sys IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
    psql.stdin.flush()
    assert psql.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        psql.communicate("ROLLBACK;\n", timeout=30)


def test_dismissing_a_running_import_kills_its_ogr2ogr(
    client: FlaskClient, admin_headers: dict[str, str], settings_env: dict[str, str], runtime: Runtime, postgis_db: str
) -> None:
    before = ogr2ogr_pids(postgis_db)
    with FakeService("files") as files, spatial_ref_sys_locked(postgis_db):
        files.route("GET", "/layer.kml", Reply(body=KML.encode()))
        inputs = {"resource_id": "dismiss-me-1", "url": f"{files.url}/layer.kml"}
        job_id = client.post("/processes/geopreview-import/execution", json={"inputs": inputs}).get_json()["jobID"]

        with running_worker(settings_env, "geo_q"):
            loading = wait_until(lambda: ogr2ogr_pids(postgis_db) - before, timeout=60, what="ogr2ogr to start")
            assert client.get(f"/jobs/{job_id}").get_json()["status"] == "running"

            dismissed = client.delete(f"/jobs/{job_id}", headers=admin_headers)

            assert dismissed.get_json()["status"] == "dismissed"
            assert wait_until_ended(runtime, job_id) == "stopped"
            wait_until(lambda: not (loading & ogr2ogr_pids(postgis_db)), timeout=30, what="ogr2ogr to be gone")

    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "dismissed"
    with psycopg.connect(runtime.settings.postgis.conninfo()) as conn:
        assert conn.execute("SELECT to_regclass('public.pre_dismiss_me_1')").fetchone() == (None,)
