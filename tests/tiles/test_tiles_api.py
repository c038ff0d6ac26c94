"""Vector tiles over HTTP: layers loaded like the import loads them, tiles decoded with mapbox-vector-tile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mapbox_vector_tile
import psycopg
import pytest
from flask.testing import FlaskClient

from tests.tiles.samples import SQUARE_DEG, load_layer, lonlat_to_tile, polygon_features, tile_to_lonlat

FIELDS = 'ogc_fid,"name",population,"share"'


def tile_url(layer: str, z: int, x: int, y: int, fields: str = FIELDS, geom: str = "wkb_geometry") -> str:
    return f"/gis/{layer}/{z}/{x}/{y}.pbf?geom={geom}&fields={fields}"


def decode(data: bytes) -> dict[str, Any]:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def expected_properties() -> dict[int, dict[str, Any]]:
    """The source attributes; the import stores decimals as ``numeric``, which MVT carries as exact text."""
    expected = {}
    for fid, feature in enumerate(polygon_features(), 1):
        properties = feature["properties"]
        expected[fid] = {"ogc_fid": fid, **properties, "share": str(properties["share"])}
    return expected


def ring_lonlat(z: int, x: int, y: int, feature: dict[str, Any]) -> list[tuple[float, float]]:
    assert feature["geometry"]["type"] == "Polygon"
    (ring,) = feature["geometry"]["coordinates"]
    return [tile_to_lonlat(z, x, y, px, py) for px, py in ring]


def test_postile_liveness_text(client: FlaskClient) -> None:
    response = client.get("/gis/test")
    assert response.status_code == 200
    assert "Postile is running" in response.get_data(as_text=True)


@pytest.mark.parametrize("z", [0, 1, 2, 4])  # z1: the buffer of the east tile must not wrap
def test_low_zoom_tile_holds_every_feature_with_ids_and_attributes(
    client: FlaskClient, polygon_layer: str, z: int
) -> None:
    x, y = lonlat_to_tile(z, 11.5, 21.0)
    response = client.get(tile_url(polygon_layer, z, x, y))

    assert response.status_code == 200
    assert response.mimetype == "application/x-protobuf"
    tile = decode(response.data)
    assert list(tile) == [polygon_layer]
    features = tile[polygon_layer]["features"]
    assert {feature["id"]: feature["properties"] for feature in features} == expected_properties()


@pytest.mark.parametrize("z", [8, 12])
def test_high_zoom_geometry_matches_the_source_square(client: FlaskClient, polygon_layer: str, z: int) -> None:
    # Feature 5 is the square [11, 11.5] x [21, 21.5]; pick the tile holding its south-west corner.
    x, y = lonlat_to_tile(z, 11.0 + 1e-6, 21.0 + 1e-6)
    tile = decode(client.get(tile_url(polygon_layer, z, x, y)).data)

    (feature,) = [item for item in tile[polygon_layer]["features"] if item["id"] == 5]
    pixel_deg = 360.0 / (1 << z) / 4096
    corners = ring_lonlat(z, x, y, feature)
    inside = [(lon, lat) for lon, lat in corners if -1 < lon - 11.0 < SQUARE_DEG + 1 and -1 < lat - 21.0 < 1]
    assert inside, "the corner of the square is in the tile"
    assert min(abs(lon - 11.0) + abs(lat - 21.0) for lon, lat in inside) < 2 * pixel_deg
    assert feature["properties"] == expected_properties()[5]


def test_tile_clips_to_its_area(client: FlaskClient, polygon_layer: str) -> None:
    # At z8 a tile is ~1.4 degrees wide: only some of the squares fall in the one holding (10.1, 20.1).
    x, y = lonlat_to_tile(8, 10.1, 20.1)
    features = decode(client.get(tile_url(polygon_layer, 8, x, y)).data)[polygon_layer]["features"]
    ids = {feature["id"] for feature in features}
    assert 1 in ids and len(ids) < 6


def test_empty_tile_is_an_empty_200(client: FlaskClient, polygon_layer: str) -> None:
    x, y = lonlat_to_tile(10, -120.0, 45.0)
    response = client.get(tile_url(polygon_layer, 10, x, y))
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["ETag"]


def test_only_requested_fields_are_sent(client: FlaskClient, polygon_layer: str) -> None:
    tile = decode(client.get(tile_url(polygon_layer, 0, 0, 0, fields="population")).data)
    features = tile[polygon_layer]["features"]
    assert {feature["id"] for feature in features} == set(range(1, 7))
    assert all(set(feature["properties"]) == {"population"} for feature in features)


def test_points_layer(client: FlaskClient, point_layer: str) -> None:
    tile = decode(client.get(tile_url(point_layer, 0, 0, 0, fields="label")).data)
    features = tile[point_layer]["features"]
    assert sorted(feature["properties"]["label"] for feature in features) == ["a", "b", "c"]
    multi = next(feature for feature in features if feature["properties"]["label"] == "c")
    assert multi["geometry"]["type"] == "MultiPoint"


def test_layer_types(client: FlaskClient, polygon_layer: str, point_layer: str) -> None:
    assert client.get(f"/gis/layer-type/{polygon_layer}").json == {"result": "ST_MultiPolygon"}
    assert client.get(f"/gis/layer-type/{point_layer}").json == {"result": "ST_MultiPoint"}


@pytest.mark.parametrize(
    "layer",
    [
        "pre_00000000_0000_0000_0000_000000000000",  # well formed, no such table
        "spatial_ref_sys",  # a real table, but not a layer
        "PRE_ABC",
        "pre_a;drop table x",
        "pre_" + "a" * 70,
    ],
)
def test_unknown_layer_is_404(client: FlaskClient, layer: str) -> None:
    for path in (tile_url(layer, 0, 0, 0), f"/gis/layer-type/{layer}", f"/preview/{layer}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error_type"] == "unknown-layer"


@pytest.mark.parametrize(
    "zxy", [(25, 0, 0), (1, 2, 0), (1, 0, 2), (3, -1, 0), (0, 0, -1), ("a", 0, 0), (2, "1.5", 0), (-1, 0, 0)]
)
def test_tile_out_of_range_is_400(client: FlaskClient, polygon_layer: str, zxy: tuple[Any, Any, Any]) -> None:
    response = client.get(tile_url(polygon_layer, *zxy))
    assert response.status_code == 400
    assert response.json["error_type"] == "tile-out-of-range"


@pytest.mark.parametrize(
    ("fields", "geom"),
    [
        ("ogc_fid,nope", "wkb_geometry"),
        ('"Name"', "wkb_geometry"),  # quoted identifiers are case-sensitive
        ("wkb_geometry", "wkb_geometry"),  # the geometry is not an attribute
        ("ogc_fid", "the_geom"),
        ("ogc_fid", "name"),  # not a geometry column
    ],
)
def test_unknown_column_is_400(client: FlaskClient, polygon_layer: str, fields: str, geom: str) -> None:
    response = client.get(tile_url(polygon_layer, 0, 0, 0, fields=fields, geom=geom))
    assert response.status_code == 400
    assert response.json["error_type"] == "unknown-column"


@pytest.mark.parametrize(
    "fields",
    [
        'ogc_fid,"name" FROM pg_user; --',
        'name"); DROP TABLE {layer}; --',
        "name,(SELECT 1)",
        "ogc_fid,name::text",
    ],
)
def test_sql_injection_in_fields_is_refused(
    client: FlaskClient, pg: psycopg.Connection, polygon_layer: str, fields: str
) -> None:
    response = client.get(tile_url(polygon_layer, 0, 0, 0, fields=fields.format(layer=polygon_layer)))

    assert response.status_code == 400
    assert response.json["error_type"] == "unknown-column"
    assert pg.execute("SELECT count(*) FROM " + polygon_layer).fetchone() == (6,)


def test_odd_column_names_are_quoted_not_pasted(client: FlaskClient, pg: psycopg.Connection, point_layer: str) -> None:
    column = 'odd "name", x'
    pg.execute(f'ALTER TABLE {point_layer} ADD COLUMN IF NOT EXISTS "odd ""name"", x" text DEFAULT \'v\'')
    try:
        response = client.get(tile_url(point_layer, 0, 0, 0, fields='label,"odd ""name"", x"'))
        features = decode(response.data)[point_layer]["features"]
        assert {feature["properties"][column] for feature in features} == {"v"}
    finally:
        pg.execute(f'ALTER TABLE {point_layer} DROP COLUMN "odd ""name"", x"')


def test_cache_headers_and_conditional_requests(client: FlaskClient, polygon_layer: str) -> None:
    url = tile_url(polygon_layer, 0, 0, 0)
    first = client.get(url)
    etag = first.headers["ETag"]
    assert "max-age=300" in first.headers["Cache-Control"] and "public" in first.headers["Cache-Control"]

    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag

    other_fields = client.get(tile_url(polygon_layer, 0, 0, 0, fields="ogc_fid"), headers={"If-None-Match": etag})
    assert other_fields.status_code == 200


def test_run_checks_include_the_tile_checks(client: FlaskClient) -> None:
    results = {item["name"]: item for item in client.get("/api/run-checks").json["result"]}
    assert results["Vector tiles"]["result"] == "Passed"
    assert results["Map preview assets"]["result"] == "Passed"


def test_etag_changes_when_the_layer_is_reimported(
    client: FlaskClient, pg: psycopg.Connection, postgis_db: str, layer_dir: Path
) -> None:
    layer = "pre_reimported_layer"
    load_layer(postgis_db, layer, polygon_features()[:2], layer_dir)
    url = tile_url(layer, 0, 0, 0)
    before = client.get(url)
    assert {feature["id"] for feature in decode(before.data)[layer]["features"]} == {1, 2}

    load_layer(postgis_db, layer, polygon_features(), layer_dir)  # ogr2ogr -overwrite: a new table
    after = client.get(url, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert {feature["id"] for feature in decode(after.data)[layer]["features"]} == set(range(1, 7))

    pg.execute(f"TRUNCATE {layer}")  # an in-place reload rewrites the table's storage
    emptied = client.get(url, headers={"If-None-Match": after.headers["ETag"]})
    assert emptied.status_code == 200 and emptied.data == b""
    assert emptied.headers["ETag"] not in {before.headers["ETag"], after.headers["ETag"]}
