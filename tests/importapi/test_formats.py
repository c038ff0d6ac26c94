"""Real-world files through add-layer → geo_q → PostGIS → CKAN callback (real ogr2ogr and PostGIS)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg

from app.settings import Settings
from tests.conftest import TEST_GIS_API_KEY
from tests.fakes import FakeCkan

from .conftest import (
    columns,
    feature,
    fields,
    geojson,
    ogr2ogr,
    polygon,
    success,
    table_facts,
    zip_files,
)

POLYGONS = geojson(
    feature(polygon(10, 20), name="Kabul", code=7, share=0.25),
    feature(polygon(12, 21, 2), name="Herat", code=8, share=1.5),
)
LINES = geojson(
    feature({"type": "LineString", "coordinates": [[1, 2], [3, 4]]}, name="road a"),
    feature({"type": "LineString", "coordinates": [[5, 6], [7, 8.5]]}, name="road b"),
)


def new_resource() -> tuple[str, str]:
    resource_id = str(uuid.uuid4())
    return resource_id, "pre_" + resource_id.replace("-", "_")


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_geojson_polygons(add_layer, serve, pg: psycopg.Connection, fake_ckan: FakeCkan, settings: Settings) -> None:
    resource_id, layer_id = new_resource()
    shape_info = add_layer(resource_id, serve("afg.geojson", POLYGONS))
    expected_fields = fields(
        ("ogc_fid", "integer"),
        ("name", "character varying"),
        ("code", "integer"),
        ("share", "numeric"),
        ("wkb_geometry", "USER-DEFINED"),
    )
    assert shape_info == success(layer_id, "BOX(10 20,14 23)", expected_fields)
    assert list(json.loads(fake_ckan.action_calls("hdx_resource_update_metadata")[0].body)) == [
        "id",
        "shape_info",
        "batch_mode",
    ]
    call = fake_ckan.action_calls("hdx_resource_update_metadata")[0]
    assert call.header("authorization") == TEST_GIS_API_KEY
    assert call.header("user-agent") == settings.ckan.user_agent
    assert call.header("content-type") == "application/json"
    assert columns(pg, layer_id) == [(f["field_name"], f["data_type"]) for f in expected_fields]
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})
    assert pg.execute(f'SELECT share FROM "{layer_id}" ORDER BY ogc_fid').fetchall() == [(0.25,), (1.5,)]


def test_kml_lines(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    kml = ogr2ogr(tmp_path / "roads.kml", write(tmp_path / "roads.geojson", LINES), "-f", "KML")
    shape_info = add_layer(resource_id, serve("roads.kml", kml.read_bytes()))
    text, number = "character varying", "integer"
    expected = fields(
        ("ogc_fid", "integer"),
        *[(name, text) for name in ("name", "description", "timestamp", "begin", "end", "altitudemode")],
        *[(name, number) for name in ("tessellate", "extrude", "visibility", "draworder")],
        ("icon", text),
        ("wkb_geometry", "USER-DEFINED"),
    )  # GDAL's LIBKML driver adds KML's standard feature fields; dates become text the map can show
    assert shape_info == success(layer_id, "BOX(1 2,7 8.5)", expected)
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiLineString"})


def test_kmz(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    kml = ogr2ogr(tmp_path / "doc.kml", write(tmp_path / "roads.geojson", LINES), "-f", "KML")
    kmz = zip_files(tmp_path / "roads.kmz", {"doc.kml": kml})
    shape_info = add_layer(resource_id, serve("roads.kmz", kmz.read_bytes()))
    assert shape_info["state"] == "success" and shape_info["bounding_box"] == "BOX(1 2,7 8.5)"
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiLineString"})


def _shapefile(tmp_path: Path, *args: str, content: bytes = POLYGONS) -> dict[str, Path]:
    source = write(tmp_path / "src.geojson", content)
    ogr2ogr(tmp_path / "admin1.shp", source, "-f", "ESRI Shapefile", "-nlt", "POLYGON", *args)
    return {ext: tmp_path / f"admin1.{ext}" for ext in ("shp", "shx", "dbf", "prj", "cpg")}


def test_zipped_shapefile_in_nested_folder_with_upper_case_extensions(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    parts = _shapefile(tmp_path)
    members = {f"Data/AFG Admin/ADMIN1.{ext.upper()}": path for ext, path in parts.items() if path.exists()}
    members["Data/readme.txt"] = b"not a layer"
    archive = zip_files(tmp_path / "afg.zip", members)
    shape_info = add_layer(resource_id, serve("afg.zip", archive.read_bytes()))
    expected = fields(
        ("ogc_fid", "integer"),
        ("name", "character varying"),
        ("code", "numeric"),
        ("share", "numeric"),
        ("wkb_geometry", "USER-DEFINED"),
    )
    assert shape_info == success(layer_id, "BOX(10 20,14 23)", expected)
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})


def test_shapefile_in_projected_crs_is_reprojected(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    parts = _shapefile(tmp_path, "-t_srs", "EPSG:3857")
    archive = zip_files(tmp_path / "merc.zip", {f"admin1.{e}": p for e, p in parts.items() if p.exists()})
    shape_info = add_layer(resource_id, serve("merc.zip", archive.read_bytes()))
    box = pg.execute(f'SELECT ST_Extent(wkb_geometry)::text FROM "{layer_id}"').fetchone()[0]
    xmin, ymin, xmax, ymax = map(float, box[4:-1].replace(",", " ").split())
    assert [round(v, 6) for v in (xmin, ymin, xmax, ymax)] == [10, 20, 14, 23]
    assert shape_info["bounding_box"] == box and shape_info["state"] == "success"
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})


def test_shapefile_without_prj_is_taken_as_wgs84(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    parts = _shapefile(tmp_path)
    members = {f"admin1.{e}": p for e, p in parts.items() if e != "prj" and p.exists()}
    archive = zip_files(tmp_path / "noprj.zip", members)
    shape_info = add_layer(resource_id, serve("noprj.zip", archive.read_bytes()))
    assert shape_info["bounding_box"] == "BOX(10 20,14 23)" and shape_info["state"] == "success"
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})


def test_mixed_polygon_and_multipolygon_promoted_to_multi(add_layer, serve, pg) -> None:
    resource_id, layer_id = new_resource()
    multi = {"type": "MultiPolygon", "coordinates": [polygon(0, 0)["coordinates"], polygon(3, 3)["coordinates"]]}
    content = geojson(feature(polygon(-5, -5), name="single"), feature(multi, name="multi"))
    shape_info = add_layer(resource_id, serve("mixed.geojson", content))
    expected = fields(("ogc_fid", "integer"), ("name", "character varying"), ("wkb_geometry", "USER-DEFINED"))
    assert shape_info == success(layer_id, "BOX(-5 -5,4 4)", expected)
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})


def test_latin1_geojson_attributes(add_layer, serve, pg) -> None:
    resource_id, layer_id = new_resource()
    content = geojson(feature(polygon(1, 1), name="Bogotá"), feature(polygon(2, 2), name="Kaédi"))
    shape_info = add_layer(resource_id, serve("latin1.geojson", content.decode("unicode_escape").encode("latin-1")))
    assert shape_info["state"] == "success"
    names = pg.execute(f'SELECT name FROM "{layer_id}" ORDER BY ogc_fid').fetchall()
    assert names == [("Bogotá",), ("Kaédi",)]


def test_latin1_shapefile_without_cpg(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    content = geojson(feature(polygon(1, 1), name="Bogotá"), feature(polygon(2, 2), name="Kaédi"))
    parts = _shapefile(tmp_path, "-lco", "ENCODING=ISO-8859-1", content=content)
    assert "á".encode("latin-1") in parts["dbf"].read_bytes()
    archive = zip_files(tmp_path / "l1.zip", {f"admin1.{e}": p for e, p in parts.items() if e != "cpg" and p.exists()})
    shape_info = add_layer(resource_id, serve("l1.zip", archive.read_bytes()))
    assert shape_info["state"] == "success"
    assert pg.execute(f'SELECT name FROM "{layer_id}" ORDER BY ogc_fid').fetchall() == [("Bogotá",), ("Kaédi",)]


def test_features_out_of_range_are_removed_and_counted(add_layer, serve, pg) -> None:
    resource_id, layer_id = new_resource()
    content = geojson(
        feature(polygon(1, 1), name="ok"),
        feature(polygon(179.5, 0), name="east"),
        feature(polygon(0, -95), name="south"),
        feature({"type": "Point", "coordinates": [30, 40]}, name="point ok"),
    )
    shape_info = add_layer(resource_id, serve("range.geojson", content))
    expected = fields(("ogc_fid", "integer"), ("name", "character varying"), ("wkb_geometry", "USER-DEFINED"))
    message = "Import successful. But 2 invalid features were deleted"
    assert shape_info == success(layer_id, "BOX(1 1,30 40)", expected, message)
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon", "ST_MultiPoint"})


def test_geopackage_with_two_layers_imports_the_larger(add_layer, serve, pg, tmp_path: Path) -> None:
    resource_id, layer_id = new_resource()
    small = write(tmp_path / "small.geojson", geojson(feature(polygon(50, 50), label="small")))
    gpkg = ogr2ogr(tmp_path / "two.gpkg", small, "-f", "GPKG", "-nln", "aaa_first")
    ogr2ogr(gpkg, write(tmp_path / "big.geojson", POLYGONS), "-f", "GPKG", "-update", "-nln", "zzz_second")
    shape_info = add_layer(resource_id, serve("two.gpkg", gpkg.read_bytes()))
    assert shape_info["bounding_box"] == "BOX(10 20,14 23)"
    assert [f["field_name"] for f in shape_info["layer_fields"]] == ["ogc_fid", "name", "code", "share", "wkb_geometry"]
    assert table_facts(pg, layer_id) == (2, {4326}, {"ST_MultiPolygon"})
