"""Features touching ±180/±90 with rounding noise are kept (clamped); only features really outside go.

Natural Earth's countries shapefile (WGS 84 in an ESRI .prj, extent ±180/±90) has Russia's largest x at
180.00000000000006 in the file itself, reprojected by ogr2ogr to EPSG:4326 unchanged: before the tolerance,
Russia was deleted as invalid.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import shapely

from app.settings import Settings
from importapi import bounds

from .conftest import feature, fields, geojson, ogr2ogr, success, table_facts, zip_files
from .test_geojson_fast import FAST, both_ways

NATURAL_EARTH_PRJ = (
    'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
)
EAST = 180.00000000000006  # Russia's largest x in Natural Earth's file
SOUTH = math.nextafter(-90.0, -100.0)
WEST = -180.00000000000006


def area(*rings: list[tuple[float, float]]) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": [[[*ring, ring[0]]] for ring in rings]}


WORLD_EDGE = geojson(
    feature(area([(170, 60), (EAST, 60), (EAST, 70), (170, 70)], [(-180, 65), (-175, 65), (-175, 68)]), name="Russia"),
    feature(area([(WEST, SOUTH), (EAST, SOUTH), (EAST, -60), (WEST, -60)]), name="Antarctica"),
    feature(area([(177, -18), (EAST, -18), (EAST, -16)], [(WEST, -17), (-179, -17), (-179, -16)]), name="Fiji"),
    feature(area([(10, 10), (12, 10), (12, 12)]), name="Inland"),
    feature(area([(179, 0), (180.001, 0), (180.001, 1)]), name="Really outside"),
)


def test_natural_earth_shaped_shapefile_keeps_every_country(add_layer, serve, pg, tmp_path: Path) -> None:
    source = tmp_path / "countries.geojson"
    source.write_bytes(WORLD_EDGE)
    ogr2ogr(tmp_path / "countries.shp", source, "-f", "ESRI Shapefile", "-nlt", "MULTIPOLYGON")
    (tmp_path / "countries.prj").write_text(NATURAL_EARTH_PRJ)
    parts = {f"countries.{ext}": tmp_path / f"countries.{ext}" for ext in ("shp", "shx", "dbf", "prj")}
    resource_id = str(uuid.uuid4())
    layer_id = "pre_" + resource_id.replace("-", "_")

    shape_info = add_layer(resource_id, serve("countries.zip", zip_files(tmp_path / "c.zip", parts).read_bytes()))

    expected = fields(("ogc_fid", "integer"), ("name", "character varying"), ("wkb_geometry", "USER-DEFINED"))
    message = "Import successful. But 1 invalid features were deleted"
    assert shape_info == success(layer_id, "BOX(-180 -90,180 70)", expected, message)
    assert table_facts(pg, layer_id) == (4, {4326}, {"ST_MultiPolygon"})
    names = pg.execute(f'SELECT name FROM "{layer_id}" ORDER BY ogc_fid').fetchall()
    assert names == [("Russia",), ("Antarctica",), ("Fiji",), ("Inland",)]
    assert _extremes(pg, layer_id) == (-180.0, -90.0, 180.0, 70.0)  # clamped, not just rounded in the text


def test_both_import_routes_keep_and_clamp_alike(settings: Settings, pg: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "countries.geojson"
    path.write_bytes(WORLD_EDGE)

    gdal, fast = both_ways(settings, pg, path)  # same rows, coordinates and message from GDAL and the fast path

    assert fast.driver == FAST
    assert (fast.feature_count, fast.removed_features, fast.bounding_box) == (4, 1, "BOX(-180 -90,180 70)")
    assert _extremes(pg, "pre_fast") == _extremes(pg, "pre_gdal") == (-180.0, -90.0, 180.0, 70.0)


def test_points_and_lines_within_the_tolerance_are_clamped_beyond_it_deleted(
    settings: Settings, pg: psycopg.Connection, tmp_path: Path
) -> None:
    near, far = bounds.LIMIT_X - 1e-9, bounds.LIMIT_X + 1e-9
    points = tmp_path / "points.geojson"
    points.write_bytes(
        geojson(
            feature({"type": "Point", "coordinates": [near, 10]}, label="near east"),
            feature({"type": "Point", "coordinates": [-near, bounds.MAX_Y + 5e-7]}, label="near corner"),
            feature({"type": "Point", "coordinates": [far, 10]}, label="just beyond"),
        )
    )
    lines = tmp_path / "lines.geojson"
    lines.write_bytes(
        geojson(
            feature({"type": "LineString", "coordinates": [[170, 0], [near, 1], [175, 2]]}, label="near"),
            feature({"type": "LineString", "coordinates": [[170, 0], [far, 1]]}, label="beyond"),
        )
    )

    _, fast = both_ways(settings, pg, points)
    assert (fast.feature_count, fast.removed_features) == (2, 1)
    assert _texts(pg, "pre_fast") == ["MULTIPOINT((180 10))", "MULTIPOINT((-180 90))"]
    _, fast = both_ways(settings, pg, lines, gdal_geometry="geometry(MultiLineString,4326)")
    assert (fast.feature_count, fast.removed_features) == (1, 1)
    assert _texts(pg, "pre_fast") == ["MULTILINESTRING((170 0,180 1,175 2))"]  # only the vertex past 180 moved


def _extremes(pg: psycopg.Connection, layer_id: str) -> tuple[float, ...]:
    return pg.execute(
        f"SELECT min(ST_XMin(wkb_geometry)), min(ST_YMin(wkb_geometry)), max(ST_XMax(wkb_geometry)), "
        f'max(ST_YMax(wkb_geometry)) FROM "{layer_id}"'
    ).fetchone()


def _texts(pg: psycopg.Connection, layer_id: str) -> list[str]:
    return [text for (text,) in pg.execute(f'SELECT ST_AsText(wkb_geometry) FROM "{layer_id}" ORDER BY ogc_fid')]


# --- clamp_wkb: every geometry type PostGIS writes ---


@pytest.mark.parametrize(
    ("geometry", "expected"),
    [
        ("POINT (180.0000001 -90.0000001)", "POINT (180 -90)"),
        ("LINESTRING Z (179 1 5, 180.0000001 2 6)", "LINESTRING Z (179 1 5, 180 2 6)"),
        ("POLYGON ((0 0, 180.0000001 0, 180.0000001 90.0000001, 0 0))", "POLYGON ((0 0, 180 0, 180 90, 0 0))"),
        ("MULTIPOINT (1 2, -180.0000001 3)", "MULTIPOINT (1 2, -180 3)"),
        (
            "GEOMETRYCOLLECTION (POINT (1 2), MULTIPOLYGON (((0 0, 1 0, 1 90.0000001, 0 0))))",
            "GEOMETRYCOLLECTION (POINT (1 2), MULTIPOLYGON (((0 0, 1 0, 1 90, 0 0))))",
        ),
        ("POINT (1.5 -2.25)", "POINT (1.5 -2.25)"),
    ],
)
@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_clamp_wkb_moves_only_coordinates_past_the_bounds(geometry: str, expected: str, byte_order: str) -> None:
    wkb = shapely.to_wkb(shapely.from_wkt(geometry), byte_order=int(byte_order == "little"), flavor="iso")
    assert shapely.from_wkb(bounds.clamp_wkb(wkb)).equals_exact(shapely.from_wkt(expected), tolerance=0)


@pytest.mark.parametrize(
    "wkb",
    [
        bytes.fromhex("0101000000000000000000f03f"),  # a point cut short
        shapely.to_wkb(shapely.from_wkt("POINT (1 2)")) + b"\x00",  # trailing bytes
        bytes.fromhex("01e7030000") + bytes(16),  # an unknown type
    ],
)
def test_clamp_wkb_refuses_wkb_it_cannot_walk(wkb: bytes) -> None:
    with pytest.raises(ValueError):
        bounds.clamp_wkb(wkb)
