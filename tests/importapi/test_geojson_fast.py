"""The GeoJSON fast path gives the same layer as the ogr2ogr path, and hands unusual files to GDAL.

Each file is imported twice through ``run_import`` (real PostGIS, real ogr2ogr): once with the fast path
off, once with it on. The tables must match column for column and row for row.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from app.settings import Settings
from core.postgis import connect
from importapi import geojson as geojson_module
from importapi import layers
from importapi.geojson import BATCH_BYTES, _decode
from importapi.pipeline import run_import

from .conftest import feature, geojson, polygon

FAST = "GeoJSON (fast path)"


def point(x: float, y: float, *more: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y, *more]}


def table_rows(pg: psycopg.Connection, layer_id: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    columns = pg.execute(
        "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = format('public.%%I', c.table_name)::regclass "
        "AND a.attname = c.column_name WHERE table_schema = 'public' AND table_name = %s "
        "ORDER BY ordinal_position",
        (layer_id,),
    ).fetchall()
    names = [sql.Identifier(name) for name, _ in columns if name != "wkb_geometry"]
    rows = pg.execute(
        sql.SQL("SELECT {}, ST_AsEWKT(wkb_geometry) FROM {} ORDER BY ogc_fid").format(
            sql.SQL(", ").join(names), sql.Identifier(layer_id)
        )
    ).fetchall()
    return columns, [tuple(map(_comparable, row)) for row in rows]


def _comparable(value: Any) -> Any:
    """Numerics to 14 significant digits: GDAL writes doubles with 15, the fast path exactly (17)."""
    return f"{value:.14g}" if isinstance(value, Decimal) else value


def both_ways(
    settings: Settings, pg: psycopg.Connection, path: Path, gdal_geometry: str | None = None
) -> tuple[Any, Any]:
    """(GDAL result, fast result) and assert that their tables are identical.

    ``gdal_geometry``: the geometry column type GDAL gives where it is less specific than the fast path's
    (it declares mixed LineString/MultiLineString layers as generic ``Geometry``).
    """
    gdal = run_import(path, "pre_gdal", settings=settings.updated(importapi={"geojson_fast_path": False}))
    fast = run_import(path, "pre_fast", settings=settings)
    assert gdal.driver == "GeoJSON"
    gdal_columns, gdal_rows = table_rows(pg, "pre_gdal")
    fast_columns, fast_rows = table_rows(pg, "pre_fast")
    if gdal_geometry is not None:
        assert gdal_columns[-1] == ("wkb_geometry", gdal_geometry)
        gdal_columns[-1] = fast_columns[-1]
    assert fast_columns == gdal_columns
    assert fast_rows == gdal_rows
    assert (fast.removed_features, fast.bounding_box, fast.layer_fields, fast.message) == (
        gdal.removed_features,
        gdal.bounding_box,
        gdal.layer_fields,
        gdal.message,
    )
    return gdal, fast


def test_points_with_all_property_kinds_match_gdal(settings: Settings, pg: psycopg.Connection, tmp_path: Path) -> None:
    features = [
        feature(
            point(10.5 + i, -20.25, 7.0),  # a Z value is dropped (-dim XY)
            **{"Name": f"n{i}", "Code-No": i, "share#": i / 3, "flag": i % 2 == 0, "note": None, "big": 2**33 + i},
        )
        for i in range(5)
    ]
    features.append(feature(None, Name="no geometry", **{"Code-No": 9}))
    features.append(feature(point(200, 0), Name="outside"))
    path = tmp_path / "kinds.geojson"
    path.write_bytes(geojson(*features))

    _, fast = both_ways(settings, pg, path)

    assert fast.driver == FAST
    assert fast.removed_features == 1
    assert [(f["field_name"], f["data_type"]) for f in fast.layer_fields] == [
        ("ogc_fid", "integer"),
        ("name", "character varying"),
        ("code_no", "integer"),
        ("share_", "numeric"),
        ("flag", "character varying"),
        ("note", "character varying"),
        ("big", "numeric"),
        ("wkb_geometry", "USER-DEFINED"),
    ]
    assert pg.execute("SELECT flag, ST_AsText(wkb_geometry) FROM pre_fast WHERE ogc_fid = 1").fetchone() == (
        "true",
        "MULTIPOINT((10.5 -20.25))",
    )


def test_lines_and_mixed_polygons_match_gdal(settings: Settings, pg: psycopg.Connection, tmp_path: Path) -> None:
    lines = tmp_path / "lines.geojson"
    lines.write_bytes(
        geojson(
            feature({"type": "LineString", "coordinates": [[0, 0], [1, 1], [2, 0]]}, road="a"),
            feature({"type": "MultiLineString", "coordinates": [[[5, 5], [6, 6]], [[7, 7], [8, 9]]]}, road="b"),
        )
    )
    mixed = tmp_path / "mixed.geojson"
    rings = [polygon(0, 0, 10)["coordinates"][0], polygon(2, 2, 1)["coordinates"][0]]
    holed = {"type": "Polygon", "coordinates": rings}
    mixed.write_bytes(
        geojson(
            feature(holed, kind="holed"),
            feature({"type": "MultiPolygon", "coordinates": [polygon(20, 20)["coordinates"]]}, kind="multi"),
            feature(polygon(179.5, 89.5), kind="outside"),
        )
    )

    assert both_ways(settings, pg, lines, gdal_geometry="geometry(Geometry,4326)")[1].driver == FAST
    assert table_rows(pg, "pre_fast")[0][-1] == ("wkb_geometry", "geometry(MultiLineString,4326)")
    _, fast = both_ways(settings, pg, mixed, gdal_geometry="geometry(Geometry,4326)")
    assert fast.driver == FAST and fast.removed_features == 1


def test_schema_widens_across_batches(settings: Settings, pg: psycopg.Connection, tmp_path: Path) -> None:
    """Later features add a column, turn integers into floats and nulls into numbers, past the first batch."""
    first = [feature(point(i % 90, 0), label=f"{'x' * 200}{i}", amount=i, later_number=None) for i in range(12000)]
    last = [feature(point(1, 1), label="tab\there \\ and\nnewline", amount=0.5, later_number=3, extra="new")]
    path = tmp_path / "widen.geojson"
    path.write_bytes(geojson(*first, *last))
    assert path.stat().st_size > 1.5 * BATCH_BYTES  # the last feature comes in a later batch

    _, fast = both_ways(settings, pg, path)

    assert fast.driver == FAST
    assert {f["field_name"]: f["data_type"] for f in fast.layer_fields} == {
        "ogc_fid": "integer",
        "label": "character varying",
        "amount": "numeric",
        "later_number": "integer",
        "extra": "character varying",
        "wkb_geometry": "USER-DEFINED",
    }
    assert pg.execute("SELECT label FROM pre_fast WHERE extra = 'new'").fetchone() == ("tab\there \\ and\nnewline",)


def test_number_spellings_and_sparse_columns_match_gdal(
    settings: Settings, pg: psycopg.Connection, tmp_path: Path
) -> None:
    """Exponents, whole floats, negative zero and nulls in numeric columns; nulls and escapes in text."""
    values = [1e-7, 1e16, 3.0, -0.0, 1.5e300, -2.5, None, 123456789.123, 7.0, None]
    features = [
        feature(
            point(i, i),
            measure=value,
            count=None if i % 3 else i * 1000,
            label=None if i % 2 else f"row\t{i}\\",
        )
        for i, value in enumerate(values)
    ]
    path = tmp_path / "spellings.geojson"
    path.write_bytes(geojson(*features))

    _, fast = both_ways(settings, pg, path)

    assert fast.driver == FAST
    rows = pg.execute("SELECT measure::text, count, label FROM pre_fast ORDER BY ogc_fid").fetchall()
    assert [row[0] for row in rows] == [
        "0.0000001",
        "10000000000000000",
        "3",
        "0",
        "15" + "0" * 299,
        "-2.5",
        None,
        "123456789.123",
        "7",
        None,
    ]
    assert [row[1] for row in rows] == [0, None, None, 3000, None, None, 6000, None, None, 9000]
    assert [row[2] for row in rows[:3]] == ["row\t0\\", None, "row\t2\\"]


def test_batches_the_typed_decoders_do_not_describe_match_gdal(
    settings: Settings, pg: psycopg.Connection, tmp_path: Path
) -> None:
    """Later batches of known columns decode into structs, a new column or an integer past int64 not."""
    first = [feature(point(i % 90, 1), n=i, label=f"{'x' * 200}{i}") for i in range(25000)]
    first[15000] = {"type": "Feature", "properties": None, "geometry": point(4, 4)}  # in the second batch
    first[15001] = feature(point(5, 5), label="only a label")
    last = [feature(point(2, 2), n=2**63 + 5, label="big"), feature(point(3, 3), n=None, label="none", new=1.5)]
    path = tmp_path / "routes.geojson"
    path.write_bytes(geojson(*first, *last))
    assert path.stat().st_size > 3 * BATCH_BYTES  # a middle batch of known columns only, then the last one
    known = {"n": "integer", "label": "text"}
    routes = {
        "first batch": _decode(orjson.dumps(first[:2])),
        "known columns": _decode(orjson.dumps(first[15000:15003]), known),
        "new column": _decode(orjson.dumps(last[1:]), known),
        "past int64": _decode(orjson.dumps(last[:1]), known),
    }
    assert {route: type((batch or [None])[0]).__name__ for route, batch in routes.items()} == {
        "first batch": "_Feature",
        "known columns": "_KnownFeature",
        "new column": "_Feature",
        "past int64": "dict",
    }

    _, fast = both_ways(settings, pg, path)

    assert fast.driver == FAST
    assert pg.execute("SELECT n::text FROM pre_fast WHERE label = 'big'").fetchone() == (str(2**63 + 5),)
    assert pg.execute("SELECT count(*), max(n) FROM pre_fast WHERE n IS NOT NULL").fetchone() == (24999, 2**63 + 5)
    assert pg.execute("SELECT count(*) FROM pre_fast WHERE label IS NULL AND n IS NULL").fetchone() == (1,)
    assert pg.execute("SELECT new FROM pre_fast WHERE label = 'none'").fetchone() == (Decimal("1.5"),)


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("projected crs", {"crs": {"type": "name", "properties": {"name": "EPSG:3857"}}}),
        ("points and polygons", {"features": [feature(point(1, 2)), feature(polygon(3, 4))]}),
        ("list property", {"features": [feature(point(1, 2), tags=[1, 2])]}),
        ("string id", {"features": [{**feature(point(1, 2), a=1), "id": "abc"}]}),
        ("single feature", feature(point(1, 2), a=1)),
    ],
)
def test_unusual_files_go_to_gdal(
    name: str, document: dict[str, Any], settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if "features" in document or "crs" in document:
        document = {"type": "FeatureCollection", "features": [feature(point(1, 2), a=1)], **document}
    path = tmp_path / "unusual.geojson"
    path.write_text(json.dumps(document))

    with caplog.at_level(logging.INFO, logger="importapi.pipeline"):
        result = run_import(path, "pre_unusual", settings=settings)

    assert result.driver == "GeoJSON", name
    assert "GeoJSON fast path not used" in caplog.text


def test_geometry_families_that_differ_between_batches_go_to_gdal(
    settings: Settings, pg: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each batch's geometries are encoded apart: a later batch of another family is caught."""
    points = [feature(point(i % 90, 1), label=f"{'x' * 200}{i}") for i in range(12000)]
    path = tmp_path / "families.geojson"
    path.write_bytes(geojson(*points, feature(polygon(3, 4), label="late polygon")))
    assert path.stat().st_size > 1.5 * BATCH_BYTES

    with caplog.at_level(logging.INFO, logger="importapi.pipeline"):
        result = run_import(path, "pre_families", settings=settings)

    assert result.driver == "GeoJSON"
    assert "mixed geometry types (MultiPoint, MultiPolygon)" in caplog.text
    assert pg.execute("SELECT count(*) FROM pre_families").fetchone() == (12001,)


@pytest.mark.parametrize("reader", ["working", "failing"])
def test_swap_reads_extent_beside_the_index_build_or_after_it(
    reader: str, settings: Settings, pg: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The concurrent extent reader gives the live table's figures; if it fails, they are read after the swap."""
    staging = layers.new_staging_name()
    layers.ensure_staging_schema(pg)
    table = sql.Identifier(layers.STAGING_SCHEMA, staging)
    pg.execute(
        sql.SQL("CREATE TABLE {} (ogc_fid serial PRIMARY KEY, name varchar, wkb_geometry geometry)").format(table)
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {} (name, wkb_geometry) SELECT 'p' || x, ST_MakePoint(x, x + 1) FROM generate_series(1, 5) x"
        ).format(table)
    )

    def open_reader() -> psycopg.Connection:
        if reader == "failing":
            raise psycopg.OperationalError("no second connection")
        return connect(settings, autocommit=True)

    with caplog.at_level(logging.WARNING, logger="importapi.layers"):
        removed, metadata = layers.finalize_and_swap(
            pg, staging, "pre_reader", logged=False, removed=0, open_reader=open_reader
        )

    assert ("concurrent extent read failed" in caplog.text) == (reader == "failing")
    assert (removed, metadata.bounding_box, metadata.feature_count) == (0, "BOX(1 2,5 6)", 5)
    assert [field["field_name"] for field in metadata.layer_fields] == ["ogc_fid", "name", "wkb_geometry"]
    assert pg.execute("SELECT to_regclass(%s) IS NULL", (f"{layers.STAGING_SCHEMA}.{staging}",)).fetchone() == (True,)
    indexes = pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'pre_reader' ORDER BY 1").fetchall()
    assert indexes == [("pre_reader_pkey",), ("pre_reader_wkb_geometry_geom_idx",)]


def test_fast_path_columns_need_no_conversion_for_the_map() -> None:
    """The swap skips the map-type conversion for fast loads (``map_types=True``): it must have nothing to do."""
    assert set(geojson_module._KIND_SQL.values()) <= set(layers.MAP_TYPES)
