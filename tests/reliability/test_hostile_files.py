"""A corpus of hostile files through the real API and a real worker: each one refused or handled with a
clear code, nothing written outside the job folder, no secret file read, and the worker alive afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.fakes import FakeCkan, FakeService, Reply
from tiles import prerender

from . import hostile
from .conftest import Proc, wait_until

ACTION = "hdx_resource_update_metadata"

# name -> (file name, bytes, expected (state, error_type))
CORPUS: dict[str, tuple[str, Callable[[], bytes], tuple[str, str]]] = {
    "zip slip": ("slip.zip", hostile.zip_slip, ("success", "None")),
    "zip bomb": ("bomb.zip", hostile.zip_bomb, ("failure", "archive-too-large")),
    "too many members": ("many.zip", lambda: hostile.many_members(120), ("failure", "archive-too-large")),
    "zips nested four deep": ("nested.zip", lambda: hostile.nested_zips(4), ("failure", "no-layer-found")),
    "symlinks in a zip": ("links.zip", hostile.zip_with_symlinks, ("failure", "unsupported-format")),
    "KMZ bomb": ("bomb.kmz", hostile.kmz_bomb, ("failure", "archive-too-large")),
    "KML external entity": ("xxe.kml", hostile.kml_external_entity, ("failure", "unsupported-format")),
    "KML billion laughs": ("laughs.kml", hostile.kml_billion_laughs, ("failure", "unsupported-format")),
    "huge single feature": ("huge.geojson", hostile.huge_feature, ("success", "None")),
    "invalid geometries": ("invalid.geojson", hostile.invalid_geometries, ("success", "None")),
    "broken encoding": ("latin.geojson", hostile.broken_encoding, ("success", "None")),
    "UTF-16 GeoJSON": ("utf16.geojson", hostile.utf16_geojson, ("failure", "unsupported-format")),
    "truncated JSON": ("truncated.geojson", hostile.truncated_json, ("failure", "unsupported-format")),
    "deeply nested JSON": ("deep.geojson", hostile.deep_json, ("failure", "unsupported-format")),
    "corrupt GeoPackage": ("broken.gpkg", hostile.corrupt_geopackage, ("failure", "unsupported-format")),
    "empty file": ("empty.geojson", lambda: b"", ("failure", "unsupported-format")),
}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # A member limit of 100 keeps the many-members archive small; the ratio and size limits are the defaults.
    return {**settings_env, "HDXRQ_ARCHIVE_MAX_MEMBERS": "100"}


def add_layer(client: FlaskClient, resource_id: str, url: str) -> None:
    answer = client.get(
        f"/api/add-layer/dataset/hostile/resource/{resource_id}",
        query_string={"resource_download_url": url, "url_type": "upload"},
    )
    assert answer.status_code == 200 and answer.get_json()["state"] == "processing", answer.data


def callbacks_by_resource(fake_ckan: FakeCkan) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for call in fake_ckan.action_calls(ACTION):
        body = call.json()
        assert body["id"] not in results, f"two callbacks for {body['id']}"
        results[body["id"]] = json.loads(body["shape_info"])
    return results


def test_hostile_files_are_refused_or_handled(
    client: FlaskClient, fake_ckan: FakeCkan, spawn: Callable[..., Proc], pg, settings, tmp_path: Path
) -> None:
    ids: dict[str, str] = {}
    with FakeService("file-host") as host:
        for name, (file_name, build, _) in CORPUS.items():
            host.route("GET", f"/files/{file_name}", Reply(body=build()))
            ids[name] = str(uuid.uuid4())
            add_layer(client, ids[name], f"{host.url}/files/{file_name}")
        worker = spawn("worker", "geo_q")
        fake_ckan.wait_for_action(ACTION, len(CORPUS), timeout=180)
        results = callbacks_by_resource(fake_ckan)

        outcomes = {name: (results[ids[name]]["state"], results[ids[name]]["error_type"]) for name in CORPUS}
        assert outcomes == {name: expected for name, (_, _, expected) in CORPUS.items()}
        for name in CORPUS:
            shape_info = results[ids[name]]
            assert shape_info["message"] and "Traceback" not in shape_info["message"]
            assert str(tmp_path) not in shape_info["message"]  # no server paths in what users see

        # Still serving: a normal file imports after the corpus.
        host.route("GET", "/files/after.geojson", Reply(body=hostile.VALID))
        after = str(uuid.uuid4())
        add_layer(client, after, f"{host.url}/files/after.geojson")
        fake_ckan.wait_for_action(ACTION, len(CORPUS) + 1, timeout=60)
        assert callbacks_by_resource(fake_ckan)[after]["state"] == "success"
        assert worker.alive(), worker.output()

    _assert_nothing_escaped(settings, tmp_path)
    _assert_prerender_bounded(pg)
    _assert_no_secret_file_in_layers(pg)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'hdxrq_staging'").fetchone()[0] == 0
    wait_until(lambda: list(Path(settings.gis_tmp).iterdir()) == [], 10, "job folders to be removed")


def _assert_nothing_escaped(settings, tmp_path: Path) -> None:
    for root in (Path("/tmp"), tmp_path, Path(settings.gis_tmp).parent):
        assert not list(root.glob("hdxrq-zip-slip*")), root
    assert not (Path("/Windows") / "hdxrq-zip-slip-drive.geojson").exists()


def _assert_no_secret_file_in_layers(pg) -> None:
    """No layer table holds a line of /etc/passwd (external entities and symlinks were not followed)."""
    tables = [name for (name,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    for table in tables:
        dumped = pg.execute(f"SELECT coalesce(string_agg(t::text, ''), '') FROM public.\"{table}\" t").fetchone()[0]
        assert hostile.PASSWD_MARKER not in dumped, table


def _assert_prerender_bounded(pg) -> None:
    """The huge feature's layer must not make the tiles prerender fill the store (each of its tiles is ~2 MB)."""
    if not pg.execute("SELECT to_regclass('hdxrq_tiles.prerendered') IS NOT NULL").fetchone()[0]:
        return
    rows = pg.execute("SELECT layer_id, sum(length(body)), max(length(body)) FROM hdxrq_tiles.prerendered GROUP BY 1")
    for layer_id, total, largest in rows:
        assert total <= prerender.MAX_STORED_BYTES + largest, layer_id
