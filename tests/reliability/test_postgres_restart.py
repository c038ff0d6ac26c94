"""PostgreSQL restarted in the middle of an import: the import is retried and succeeds, one callback.

Restarting the shared cluster would break other developers' running tests, so this test runs a private
PostgreSQL 15 cluster (``initdb``/``pg_ctl`` as ``postgres`` in a temp dir, on a free port, PostGIS created,
password authentication for a plain owner role). The worker is real; ogr2ogr is loading when the server
goes down (``pg_ctl stop -m fast`` terminates every connection, as a failover or an upgrade restart does).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from rq.job import Job

from core.connections import SERIALIZER
from core.runtime import Runtime
from tests.fakes import FakeCkan, FakeService, Reply

from .conftest import PostgresServer, Proc, advance_rq_clock, wait_until
from .test_worker_kill import many_points

ACTION = "hdx_resource_update_metadata"
DB, USER, PASSWORD = "gis_private", "hdxrq_gis", "pg-password-for-the-restart-test"


@pytest.fixture
def postgres(private_postgres: Callable[[], PostgresServer]) -> PostgresServer:
    server = private_postgres()
    server.create_gis_database(DB, USER, PASSWORD)
    return server


@pytest.fixture
def settings_env(settings_env: dict[str, str], postgres: PostgresServer) -> dict[str, str]:
    private = {"HDX_GISDB_PORT": str(postgres.port), "HDX_GISDB_DB": DB, "HDX_GISDB_USER": USER}
    return {**settings_env, **private, "HDX_GISDB_PASS": PASSWORD}


def staging_tables(postgres: PostgresServer) -> list[str]:
    try:
        with postgres.connect(DB) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'hdxrq_staging'").fetchall()
    except Exception:
        return ["(server down)"]
    return [name for (name,) in rows]


def test_postgres_restart_mid_import_is_retried(
    client: FlaskClient, fake_ckan: FakeCkan, runtime: Runtime, spawn: Callable[..., Proc], postgres: PostgresServer
) -> None:
    resource_id = str(uuid.uuid4())
    job_id = f"geopreview-{resource_id}"
    points = 150_000
    with FakeService("file-host") as host:
        host.route("GET", "/files/points.geojson", Reply(body=many_points(points)))
        answer = client.get(
            f"/api/add-layer/dataset/d/resource/{resource_id}",
            query_string={"resource_download_url": f"{host.url}/files/points.geojson", "url_type": "upload"},
        )
        assert answer.get_json()["state"] == "processing"
        worker = spawn("worker", "geo_q")

        def loading() -> bool:
            job = Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER)
            return job.get_meta(refresh=True).get("stage") == "loading" and bool(staging_tables(postgres))

        wait_until(loading, 120, "ogr2ogr to load into PostGIS")
        postgres.stop("fast")  # every connection terminated, ogr2ogr's COPY included
        postgres.start()

        def callback_sent() -> bool:
            if fake_ckan.action_calls(ACTION):
                return True
            advance_rq_clock(runtime.redis, 300, ["geo_q"])  # the import's retry interval, without waiting
            return bool(fake_ckan.action_calls(ACTION))

        wait_until(callback_sent, 180, "the callback", interval=0.5)
        wait_until(lambda: _status(runtime, job_id) == "finished", 60, "the import job to finish")

    calls = fake_ckan.action_calls(ACTION)
    assert len(calls) == 1
    shape_info = json.loads(calls[0].json()["shape_info"])
    assert shape_info["state"] == "success", shape_info
    layer = shape_info["layer_id"]
    with postgres.connect(DB) as conn:
        assert conn.execute(f'SELECT count(*) FROM public."{layer}"').fetchone()[0] == points
    assert staging_tables(postgres) == []
    assert worker.alive()


def _status(runtime: Runtime, job_id: str) -> str:
    return Job.fetch(job_id, connection=runtime.redis, serializer=SERIALIZER).get_status()
