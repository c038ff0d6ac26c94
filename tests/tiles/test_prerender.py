"""Prerendered tiles: built by a job after the import, served from PostGIS, invalidated and dropped with the layer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import psycopg
import pytest
from flask import Flask

from app.factory import create_app
from app.settings import Settings
from core import runtime as runtime_module
from core.auth import OPERATOR
from core.connections import queue
from core.queues import QueueName
from core.runtime import Runtime
from importapi import layers as import_layers
from importapi import service as import_service
from tests.conftest import pg_connect
from tests.fakes import FakeCkan, FakeService, Reply
from tests.tiles.samples import load_layer, polygon_features
from tiles import tasks
from tiles.layers import load_layer as load_tile_layer
from tiles.prerender import STORE, ensure_store, prerender

ALL_FIELDS = 'ogc_fid,"name",population,"share"'


@pytest.fixture
def fake_ckan() -> Iterator[FakeCkan]:
    """The import job's callback needs a CKAN that answers (the tiles conftest otherwise gives a dead address)."""
    with FakeCkan() as ckan:
        yield ckan


@pytest.fixture
def tiles_app(settings_env: dict[str, str], runtime: Runtime) -> Iterator[Callable[..., tuple[Runtime, Flask]]]:
    """An app and the process runtime with extra settings (the ``runtime`` fixture resets the process one).

    The memory cache is off, so what is served shows what the store holds.
    """
    opened: list[Runtime] = []

    def build(**env: str) -> tuple[Runtime, Flask]:
        values = {**settings_env, "HDXRQ_TILES_MEMORY_CACHE_MB": "0", **env}
        built = runtime_module.install(Runtime(Settings.from_env(values)))
        opened.append(built)
        return built, create_app(runtime=built)

    yield build
    for built in opened:
        built.close()


def features_of(data: bytes, layer: str) -> dict[int, dict[str, Any]]:
    decoded = mapbox_vector_tile.decode(data)
    return {feature["id"]: feature["properties"] for feature in decoded[layer]["features"]}


def stored(pg: psycopg.Connection, layer: str) -> list[tuple[int, int, int, str]]:
    return pg.execute(
        f"SELECT z, x, y, generation FROM {STORE} WHERE layer_id = %s ORDER BY z, x, y", (layer,)
    ).fetchall()


def new_layer_id() -> str:
    return "pre_" + uuid.uuid4().hex


def squares_layer(postgis_db: str, tmp_path: Path) -> str:
    """A new layer of the six sample squares; its id."""
    layer = new_layer_id()
    load_layer(postgis_db, layer, polygon_features(), tmp_path)
    return layer


def test_expensive_tiles_are_prerendered_and_served_from_the_store(
    tiles_app, burst_worker, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    runtime, app = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="6")
    layer = new_layer_id()
    load_layer(postgis_db, layer, polygon_features(), tmp_path)
    tasks.layer_imported(runtime, layer)
    assert burst_worker("tiles_q")

    # Six squares, one degree apart: tiles hold all six down to z4; at z5 they fall into separate tiles.
    rows = stored(pg, layer)
    assert [(z, x, y) for z, x, y, _ in rows] == [(0, 0, 0), (1, 1, 0), (2, 2, 1), (3, 4, 3), (4, 8, 7)]
    pg.execute(f"UPDATE {layer} SET name = 'Renamed' WHERE ogc_fid = 2")  # keeps the generation: not re-rendered

    client = app.test_client()
    for z, x, y, _ in rows:
        body = client.get(f"/gis/{layer}/{z}/{x}/{y}.pbf?geom=wkb_geometry&fields={ALL_FIELDS}").data
        features = features_of(body, layer)
        assert sorted(features) == [1, 2, 3, 4, 5, 6]
        assert features[2] == {"ogc_fid": 2, "name": "Zone 2", "population": 2000, "share": "0.25"}
    # The same fields in another order are the same tile (one ETag, served from the store too).
    reordered = client.get(f'/gis/{layer}/0/0/0.pbf?fields=population,"share",name,ogc_fid')
    assert features_of(reordered.data, layer)[2]["name"] == "Zone 2"
    assert reordered.headers["ETag"] == client.get(f"/gis/{layer}/0/0/0.pbf?fields={ALL_FIELDS}").headers["ETag"]
    # Other field sets are built on request, from the table as it is.
    assert features_of(client.get(f"/gis/{layer}/0/0/0.pbf?fields=name").data, layer)[2] == {"name": "Renamed"}


def test_prerender_stops_at_the_tile_budget_and_runs_twice_safely(
    tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    runtime, _ = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="1", HDXRQ_TILES_PRERENDER_MAX_TILES="3")
    layer = squares_layer(postgis_db, tmp_path)

    first = tasks.prerender_layer(layer)
    second = tasks.prerender_layer(layer)

    assert (first["stored"], first["already_stored"], first["state"]) == (3, 0, "done")
    assert (second["stored"], second["already_stored"]) == (0, 3)
    assert [row[:3] for row in stored(pg, layer)] == [(0, 0, 0), (1, 1, 0), (2, 2, 1)]


def test_prerender_stops_when_its_time_is_up(
    tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    """``HDXRQ_TILES_PRERENDER_MAX_SEC`` bounds the job. On a clock where every stored tile takes one second,
    2.5 s leave time for three tiles, the lowest zooms first."""
    runtime, _ = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="1", HDXRQ_TILES_PRERENDER_MAX_SEC="2.5")
    layer = squares_layer(postgis_db, tmp_path)
    ensure_store(pg)

    def tiles_stored() -> float:
        return float(len(stored(pg, layer)))

    with runtime.postgis.connection() as conn:
        report = prerender(conn, load_tile_layer(conn, layer), runtime.settings.tiles, clock=tiles_stored)

    assert (report.stored, report.state, report.seconds) == (3, "time-limit", 3.0)
    assert [row[:3] for row in stored(pg, layer)] == [(0, 0, 0), (1, 1, 0), (2, 2, 1)]


def test_a_tile_build_gets_only_the_time_left(
    tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    """A tile still being built when the time is up is cancelled by PostgreSQL and stores nothing."""
    runtime, _ = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="1", HDXRQ_TILES_PRERENDER_MAX_SEC="10")
    layer = squares_layer(postgis_db, tmp_path)
    moments = iter([0.0, 9.8])  # the start; 200 ms left when the first tile is built
    with pg_connect(postgis_db) as locker:

        def clock() -> float:
            moment = next(moments, 10.0)
            if moment == 9.8:  # from here on the store takes no row: the tile's INSERT waits for the lock
                locker.execute(f"LOCK TABLE {STORE} IN EXCLUSIVE MODE")
            return moment

        with runtime.postgis.connection() as conn:
            report = prerender(conn, load_tile_layer(conn, layer), runtime.settings.tiles, clock=clock)
        locker.rollback()

    assert (report.stored, report.state) == (0, "time-limit")
    assert stored(pg, layer) == []


def test_cheap_layers_store_nothing(tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path) -> None:
    tiles_app()  # default threshold: six squares are cheap at every zoom
    layer = new_layer_id()
    load_layer(postgis_db, layer, polygon_features(), tmp_path)
    assert tasks.prerender_layer(layer)["stored"] == 0
    assert stored(pg, layer) == []


def test_reimport_invalidates_and_the_next_run_replaces_old_tiles(
    tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    _, app = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="1", HDXRQ_TILES_PRERENDER_MAX_TILES="1")
    client = app.test_client()
    layer = new_layer_id()
    load_layer(postgis_db, layer, polygon_features(), tmp_path)
    tasks.prerender_layer(layer)
    [(_, _, _, old_generation)] = stored(pg, layer)

    load_layer(postgis_db, layer, polygon_features()[:2], tmp_path)  # a new table, before any prerender
    url = f"/gis/{layer}/0/0/0.pbf?fields={ALL_FIELDS}"
    assert sorted(features_of(client.get(url).data, layer)) == [1, 2]

    tasks.prerender_layer(layer)
    [(_, _, _, new_generation)] = stored(pg, layer)
    assert new_generation != old_generation
    assert sorted(features_of(client.get(url).data, layer)) == [1, 2]


def test_deleting_a_layer_deletes_its_prerendered_tiles(
    tiles_app, pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="1", HDXRQ_TILES_PRERENDER_MAX_TILES="2")
    deleted, dropped_elsewhere, kept = new_layer_id(), new_layer_id(), new_layer_id()
    for layer in (deleted, dropped_elsewhere, kept):
        load_layer(postgis_db, layer, polygon_features(), tmp_path)
        tasks.prerender_layer(layer)

    assert import_layers.drop_layer(pg, deleted)  # what delete-one-layer and delete-layers run
    pg.execute(f"DROP TABLE {dropped_elsewhere}")  # by hand: the next prerender run cleans up
    assert stored(pg, deleted) == []
    tasks.prerender_layer(kept)
    assert stored(pg, dropped_elsewhere) == []
    assert len(stored(pg, kept)) == 2
    assert tasks.prerender_layer(deleted) == {"layer_id": deleted, "state": "layer-gone"}


def test_import_job_queues_the_prerender(
    tiles_app, burst_worker, fake_ckan: FakeCkan, pg: psycopg.Connection, tmp_path: Path
) -> None:
    runtime, app = tiles_app(HDXRQ_TILES_PRERENDER_MIN_FEATURES="6")
    resource_id = str(uuid.uuid4())
    layer = "pre_" + resource_id.replace("-", "_")
    squares = json.dumps({"type": "FeatureCollection", "features": polygon_features()}).encode()
    with FakeService("file-host") as host:
        host.route("GET", "/files/squares.geojson", Reply(body=squares))
        url = f"{host.url}/files/squares.geojson"
        import_service.request_import(runtime, OPERATOR, "d1", resource_id, url, "upload")
        burst_worker("geo_q")

    [call] = fake_ckan.action_calls("hdx_resource_update_metadata")
    assert json.loads(call.json()["shape_info"])["state"] == "success"
    # The prerender waits in a lane of its own, after the import and its callback.
    [prerender] = queue(QueueName.TILES, runtime.redis).get_jobs()
    assert prerender.func_name == "tiles.tasks.prerender_layer" and prerender.args == [layer]
    assert stored(pg, layer) == []
    assert burst_worker("tiles_q")
    assert [row[:3] for row in stored(pg, layer)][0] == (0, 0, 0)
    body = app.test_client().get(f"/gis/{layer}/0/0/0.pbf?fields={ALL_FIELDS}").data
    assert sorted(features_of(body, layer)) == [1, 2, 3, 4, 5, 6]


def test_prerender_can_be_switched_off(tiles_app, burst_worker, postgis_db: str, tmp_path: Path) -> None:
    runtime, _ = tiles_app(HDXRQ_TILES_PRERENDER="false")
    tasks.layer_imported(runtime, new_layer_id())
    assert not burst_worker("tiles_q")
