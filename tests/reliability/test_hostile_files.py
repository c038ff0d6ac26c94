"""A corpus of hostile files through the real API and a real worker: each one refused or handled with a
clear code, nothing written outside the job folder, no secret file read, the loopback server the files
point at never asked anything, and the worker alive afterwards.

The million-entry zip has a test of its own below, which also measures the worker's peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import HDXRQ_PY, ROOT
from tests.fakes import FakeCkan, FakeService, Reply
from tiles import prerender

from . import hostile
from .conftest import Proc, wait_until

ACTION = "hdx_resource_update_metadata"

Build = Callable[[hostile.Bait, Path], bytes]
# name -> (file name, builder(bait, scratch folder), expected (state, error_type))
CORPUS: dict[str, tuple[str, Build, tuple[str, str]]] = {
    "zip slip": ("slip.zip", lambda b, t: hostile.zip_slip(), ("success", "None")),
    "zip bomb": ("bomb.zip", lambda b, t: hostile.zip_bomb(), ("failure", "archive-too-large")),
    "too many members": ("many.zip", lambda b, t: hostile.many_members(120), ("failure", "archive-too-large")),
    "zips nested four deep": ("nested.zip", lambda b, t: hostile.nested_zips(4), ("failure", "no-layer-found")),
    "nested zip over the budget": (
        "nested-bomb.zip",
        lambda b, t: hostile.nested_over_budget(2.5),
        ("failure", "archive-too-large"),
    ),
    "overlapping entries": ("overlap.zip", lambda b, t: hostile.overlapping_zip(), ("failure", "unsupported-format")),
    "symlinks in a zip": ("links.zip", lambda b, t: hostile.zip_with_symlinks(), ("failure", "unsupported-format")),
    "KMZ bomb": ("bomb.kmz", lambda b, t: hostile.kmz_bomb(), ("failure", "archive-too-large")),
    "KML external entity": ("xxe.kml", lambda b, t: hostile.kml_external_entity(), ("failure", "unsupported-format")),
    "KML billion laughs": ("laughs.kml", lambda b, t: hostile.kml_billion_laughs(), ("failure", "unsupported-format")),
    "VRT as .shp in a zip": (
        "vrt.zip",
        lambda b, t: hostile.vrt_in_zip_as_shapefile(b),
        ("failure", "unsupported-format"),
    ),
    "VRT as .geojson": ("vrt.geojson", lambda b, t: hostile.vrt(b), ("failure", "unsupported-format")),
    "VRT as .kml": ("vrt.kml", lambda b, t: hostile.vrt(b), ("failure", "unsupported-format")),
    "GML xlink to a local file": (
        "local.gml",
        lambda b, t: hostile.gml_xlink_to_file(b),
        ("failure", "unsupported-format"),
    ),
    "GML xlink to a loopback URL": (
        "url.gml",
        lambda b, t: hostile.gml_xlink_to_url(b),
        ("failure", "unsupported-format"),
    ),
    "GeoJSON with a linked CRS": ("crs.geojson", lambda b, t: hostile.geojson_crs_link(b), ("success", "None")),
    "layer named -sql ...": ("options.gpkg", lambda b, t: hostile.layer_named_like_an_option(t), ("success", "None")),
    "huge single feature": ("huge.geojson", lambda b, t: hostile.huge_feature(), ("success", "None")),
    "invalid geometries": ("invalid.geojson", lambda b, t: hostile.invalid_geometries(), ("success", "None")),
    "broken encoding": ("latin.geojson", lambda b, t: hostile.broken_encoding(), ("success", "None")),
    "UTF-16 GeoJSON": ("utf16.geojson", lambda b, t: hostile.utf16_geojson(), ("failure", "unsupported-format")),
    "truncated JSON": ("truncated.geojson", lambda b, t: hostile.truncated_json(), ("failure", "unsupported-format")),
    "deeply nested JSON": ("deep.geojson", lambda b, t: hostile.deep_json(), ("failure", "unsupported-format")),
    "corrupt GeoPackage": ("broken.gpkg", lambda b, t: hostile.corrupt_geopackage(), ("failure", "unsupported-format")),
    "empty file": ("empty.geojson", lambda b, t: b"", ("failure", "unsupported-format")),
}
SECRET = "outside-the-job-folder-2b7e"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # A member limit of 100 keeps the many-members archive small, an unpack budget of 4 MB the nested one;
    # the ratio limit is the default.
    return {**settings_env, "HDXRQ_ARCHIVE_MAX_MEMBERS": "100", "HDXRQ_ARCHIVE_MAX_UNPACKED_MB": "4"}


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
    with FakeService("file-host") as host, FakeService("bait") as bait_server:
        bait_server.route("GET", "/rows.csv", Reply(body=f'wkt,leak\n"POINT (10 10)",{SECRET}\n'))
        bait = hostile.Bait.lay(tmp_path / "outside", bait_server.url, SECRET)
        for name, (file_name, build, _) in CORPUS.items():
            host.route("GET", f"/files/{file_name}", Reply(body=build(bait, tmp_path / "scratch")))
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
        results = callbacks_by_resource(fake_ckan)
        assert results[after]["state"] == "success"
        assert worker.alive(), worker.output()
        assert bait_server.calls == []  # nothing any file named was fetched

    _assert_nothing_escaped(settings, tmp_path)
    _assert_prerender_bounded(pg)
    _assert_no_secret_file_in_layers(pg)
    _assert_only_the_successes_are_layers(pg, results)
    option_layer = "pre_" + ids["layer named -sql ..."].replace("-", "_")
    assert pg.execute(f"SELECT count(*) FROM public.{option_layer}").fetchone()[0] == 3  # the chosen layer, whole
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'hdxrq_staging'").fetchone()[0] == 0
    wait_until(lambda: list(Path(settings.importapi.gis_tmp).iterdir()) == [], 10, "job folders to be removed")


def _assert_only_the_successes_are_layers(pg, results: dict[str, dict]) -> None:
    """Of this test's resources, exactly the successes have a layer table (the session's database is shared)."""
    tables = {name for (name,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    ours = {info["layer_id"]: info["state"] == "success" for info in results.values()}
    assert {layer: layer in tables for layer in ours} == ours


def _assert_nothing_escaped(settings, tmp_path: Path) -> None:
    for root in (Path("/tmp"), tmp_path, Path(settings.importapi.gis_tmp).parent):
        assert not list(root.glob("hdxrq-zip-slip*")), root
    assert not (Path("/Windows") / "hdxrq-zip-slip-drive.geojson").exists()


def _assert_no_secret_file_in_layers(pg) -> None:
    """No layer table holds a line of /etc/passwd (external entities and symlinks were not followed), nor
    the bait's secret (files outside the job folder, the bait server, /proc)."""
    tables = [name for (name,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    for table in tables:
        dumped = pg.execute(f"SELECT coalesce(string_agg(t::text, ''), '') FROM public.\"{table}\" t").fetchone()[0]
        assert hostile.PASSWD_MARKER not in dumped and SECRET not in dumped, table


def _assert_prerender_bounded(pg) -> None:
    """The huge feature's layer must not make the tiles prerender fill the store (each of its tiles is ~2 MB)."""
    if not pg.execute("SELECT to_regclass('hdxrq_tiles.prerendered') IS NOT NULL").fetchone()[0]:
        return
    rows = pg.execute("SELECT layer_id, sum(length(body)), max(length(body)) FROM hdxrq_tiles.prerendered GROUP BY 1")
    for layer_id, total, largest in rows:
        assert total <= prerender.MAX_STORED_BYTES + largest, layer_id


MEMORY_LIMIT_MB = 150
MEASURE = """
import os, subprocess, sys
worker = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(worker.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""
"""Runs the worker and reports its exit code and peak RSS (KB), its work horses included. The worker is
started from this small process, not from pytest: a child forked from a large process counts that
process's pages in its peak until it execs, so pytest's own memory would be reported as the worker's."""


def test_a_worker_handed_the_million_entry_zip_stays_small(
    client: FlaskClient, fake_ckan: FakeCkan, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """A million entries (honestly counted, and a central directory that understates its count): both
    refused with the worker's peak memory, its work horses included (``wait4``), under 150 MB. Python's
    zipfile alone needs about 0.6 KB per entry to read such a directory."""
    honest = hostile.million_entries_zip(tmp_path / "million.zip")
    liar = hostile.many_entries_zip(tmp_path / "liar.zip", 1_000_000, declared=5000)
    ids = {"honest": str(uuid.uuid4()), "liar": str(uuid.uuid4())}
    with FakeService("file-host") as host:
        for name, path in (("honest", honest), ("liar", liar)):
            host.route("GET", f"/files/{name}.zip", Reply(body=path.read_bytes()))
            add_layer(client, ids[name], f"{host.url}/files/{name}.zip")
        env = {"PATH": os.environ.get("PATH", ""), **settings_env, "HDXRQ_ARCHIVE_MAX_MEMBERS": "10000"}
        argv = [sys.executable, "-c", MEASURE, sys.executable, HDXRQ_PY, "worker", "--burst", "geo_q"]
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        assert len(host.calls) == 2  # both files were downloaded whole

    exit_code, peak_kb = map(int, done.stdout.split())
    print(f"peak RSS of the worker and its work horses: {peak_kb / 1024:.0f} MB")
    assert exit_code == 0
    assert peak_kb / 1024 < MEMORY_LIMIT_MB
    results = callbacks_by_resource(fake_ckan)
    assert (results[ids["honest"]]["error_type"], results[ids["honest"]]["message"]) == (
        "archive-too-large",
        "The archive has more than 10000 entries",
    )
    assert results[ids["liar"]]["error_type"] == "unsupported-format"
