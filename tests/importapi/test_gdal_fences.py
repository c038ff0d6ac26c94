"""GDAL's fences, each tried alone with the real ``ogrinfo``: the driver allow-list, the dead network, and
the sandbox. The later fences are tested with the earlier ones opened on purpose (a VRT allowed), to show
that each one holds by itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from importapi import formats, ogr
from importapi.errors import UnsupportedFormat
from tests.fakes import FakeService, Reply

SECRET = "gdal-fence-secret-90c2"


@pytest.fixture
def sentinel() -> Iterator[FakeService]:
    """A loopback server the hostile files point at: it must never be asked anything."""
    with FakeService("sentinel") as server:
        server.route("GET", "/rows.csv", Reply(body=f'wkt,leak\n"POINT (1 2)",{SECRET}\n'))
        yield server


def vrt(source: str) -> str:
    """A GDAL VRT whose rows come from ``source`` (a CSV with a WKT column)."""
    return (
        f'<OGRVRTDataSource><OGRVRTLayer name="{Path(source).stem}"><SrcDataSource>{source}</SrcDataSource>'
        '<GeometryField encoding="WKT" field="wkt"/></OGRVRTLayer></OGRVRTDataSource>'
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("fmt", formats.FORMATS[:4], ids=lambda fmt: fmt.kind)
def test_gdal_lists_only_the_formats_drivers(fmt: formats.Format, work: Path) -> None:
    env = ogr.child_env(drivers=(*fmt.drivers, ogr.OUTPUT_DRIVER), work=work)
    listed = subprocess.run(["ogrinfo", "--formats"], env=env, capture_output=True, text=True, check=True).stdout
    names = {match.group("name") for match in ogr._DRIVER_LINE.finditer(listed)}
    assert names == {*fmt.drivers, ogr.OUTPUT_DRIVER}
    assert len(ogr.installed_drivers()) > 40  # the installed GDAL really has the others


def test_a_vrt_reaching_gdal_as_a_shapefile_opens_nothing(work: Path, sentinel: FakeService, tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_text(f'wkt,leak\n"POINT (1 2)",{SECRET}\n')
    disguised = work / "layer.shp"
    disguised.write_text(vrt(f"{tmp_path / 'outside.csv'}"))
    with pytest.raises(UnsupportedFormat):
        ogr.inspect(disguised, work, formats.BY_KIND["shp"].drivers)
    disguised.write_text(vrt(f"/vsicurl/{sentinel.url}/rows.csv"))
    with pytest.raises(UnsupportedFormat):
        ogr.inspect(disguised, work, formats.BY_KIND["shp"].drivers)
    assert sentinel.calls == []


def test_with_vrt_allowed_the_network_stays_dead(work: Path, sentinel: FakeService) -> None:
    """Each network fence alone: the dead proxy without the sandbox, the sandbox without the dead proxy."""
    source = work / "rows.vrt"
    source.write_text(vrt(f"/vsicurl/{sentinel.url}/rows.csv"))
    argv = ["ogrinfo", "-ro", "-al", str(source)]
    env = ogr.child_env(drivers=("OGR_VRT", "CSV"), work=work)
    proxy_only = subprocess.run(argv, env=env, capture_output=True, text=True)
    no_proxy = {name: value for name, value in env.items() if name not in ogr._PROXY_VARIABLES}
    with ogr._confined(source, work) as confinement:
        sandbox_only = subprocess.run(argv, env=no_proxy, capture_output=True, text=True, **confinement)
    assert SECRET not in proxy_only.stdout + sandbox_only.stdout
    assert sentinel.calls == []
    subprocess.run(argv, env=no_proxy, capture_output=True, text=True)  # the control, without either fence:
    assert sentinel.calls  # GDAL does ask the server


def test_with_vrt_allowed_the_sandbox_keeps_other_files_and_the_environment_out(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside.csv").write_text(f'wkt,leak\n"POINT (1 2)",{SECRET}\n')
    (work / "inside.csv").write_text('wkt,leak\n"POINT (3 4)",harmless\n')
    monkeypatch.setenv("PGPASSWORD", SECRET)  # not passed on to ogrinfo; ogr2ogr's own is shown below
    read = {}
    for name, target in (("inside", work / "inside.csv"), ("outside", tmp_path / "outside.csv")):
        source = work / f"{name}.vrt"
        source.write_text(vrt(str(target)))
        read[name] = ogr.run_ogrinfo(["-ro", "-al", str(source)], source, work, ("OGR_VRT", "CSV"))
    assert "harmless" in read["inside"]  # the same construction works inside the job's folder
    assert SECRET not in read["outside"]

    environ = work / "environ.vrt"
    environ.write_text(vrt("CSV:/proc/self/environ"))
    env = ogr.child_env({"PGPASSWORD": SECRET}, drivers=("OGR_VRT", "CSV"), work=work)
    with ogr._confined(environ, work) as confinement:
        done = subprocess.run(
            ["ogrinfo", "-ro", "-al", str(environ)], env=env, capture_output=True, text=True, **confinement
        )
    assert SECRET in env.values() and SECRET not in done.stdout
    assert "Permission denied" in done.stderr


def test_the_child_environment_is_built_not_inherited(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGR_SQLITE_LOAD_EXTENSIONS", "/tmp/evil.so")
    monkeypatch.setenv("GDAL_DRIVER_PATH", "/tmp/plugins")
    monkeypatch.setenv("GDAL_HTTP_PROXY", "")
    monkeypatch.setenv("HDX_GISDB_PASS", SECRET)
    env = ogr.child_env(drivers=("GPKG",), work=work)
    assert "OGR_SQLITE_LOAD_EXTENSIONS" not in env and "GDAL_DRIVER_PATH" not in env
    assert env["GDAL_HTTP_PROXY"] == env["GDAL_HTTPS_PROXY"] == ogr.NETWORK_BACKSTOP
    assert env["PROJ_NETWORK"] == "OFF" and env["HOME"] == str(work)
    assert SECRET not in env.values()
    assert os.environ["HDX_GISDB_PASS"] == SECRET


def test_a_layer_name_never_stands_bare_on_the_command_line(work: Path) -> None:
    layer = ogr.LayerInfo(name="-sql SELECT 1", geometry_type="Point", feature_count=1, has_srs=True)
    options = ogr.LoadOptions(conninfo="dbname=x", password=None, schema="s", table="t", timeout_sec=1)
    one = ogr.SourceInfo(path=work / "a.gpkg", driver="GPKG", layer=layer, layer_count=1, drivers=("GPKG",))
    assert not any(arg.startswith("-sql") for arg in ogr.load_argv(one, options, work))
    two = ogr.SourceInfo(path=work / "a.gpkg", driver="GPKG", layer=layer, layer_count=2, drivers=("GPKG",))
    argv = ogr.load_argv(two, options, work)
    assert argv[argv.index("-sql") + 1] == f"@{work / 'layer.sql'}"
    assert (work / "layer.sql").read_text() == 'SELECT * FROM "-sql SELECT 1"'
    assert "-sql SELECT 1" not in argv
    quoted = ogr.SourceInfo(
        path=work / "a.gpkg",
        driver="GPKG",
        layer=ogr.LayerInfo(name='x" OR "1', geometry_type="Point", feature_count=1, has_srs=True),
        layer_count=2,
    )
    with pytest.raises(UnsupportedFormat):
        ogr.load_argv(quoted, options, work)
