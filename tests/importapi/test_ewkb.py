"""The geometry column of the GeoJSON fast path: the raw route gives exactly what the typed route gives."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from importapi.ewkb import NULL, GeometryBatch, NotSimple, RawGeometry, encode, encode_raw

from .conftest import feature, polygon


def point(x: float, y: float, *more: float) -> dict:
    return {"type": "Point", "coordinates": [x, y, *more]}


def features_text(*features: dict) -> bytes:
    return json.dumps(list(features)).encode()  # json: integers past 64 bits too


def test_encode_gives_multi_ewkb_leaves_out_features_out_of_range_and_keeps_missing_geometries() -> None:
    holed = {"type": "Polygon", "coordinates": [polygon(0, 0, 10)["coordinates"][0], polygon(2, 2)["coordinates"][0]]}
    column = encode(
        features_text(
            feature(holed),
            feature(polygon(200, 0)),  # outside ±180: left out
            {"type": "Feature", "properties": {}, "geometry": None},
            feature({"type": "MultiPolygon", "coordinates": [polygon(x, x)["coordinates"] for x in (5, 7)]}),
        )
    )

    assert (column.count, column.family, column.removed) == (4, "MultiPolygon", [1])
    assert column.geometries[1] == NULL
    first, last = (shapely.from_wkb(bytes.fromhex(text)) for text in (column.geometries[0], column.geometries[2]))
    assert shapely.get_srid(first) == 4326 and first.geom_type == "MultiPolygon"
    assert first.equals(shapely.MultiPolygon([shapely.Polygon(*(holed["coordinates"][0], holed["coordinates"][1:]))]))
    assert len(last.geoms) == 2


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ((feature(point(1, 2)), feature(polygon(3, 4))), "mixed geometry types"),
        ((feature({"type": "GeometryCollection", "geometries": []}),), "of type 'GeometryCollection'"),
        ((feature({"type": "Polygon", "coordinates": []}),), "unusual coordinates"),
        ((feature({"type": "Point", "coordinates": [True, 2]}),), "of type 'Point' or with unusual coordinates"),
        (({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "id": "x"},), None),
        (([1, 2],), "not a Feature"),
    ],
)
def test_encode_judges_batches_of_both_decoding_routes_alike(features: tuple, reason: str | None) -> None:
    """Batches that fail msgspec's typed decoding take the general route and are judged the same way."""
    if reason is None:  # a string id is the properties' reader's business: the geometry is fine
        assert len(encode(features_text(*features)).geometries) == 1
        return
    with pytest.raises(NotSimple, match=reason):
        encode(features_text(*features))


def raw_geometries(*geometries: Any) -> list[RawGeometry | None]:
    """The geometries as geojson's typed decoder gives them (coordinates left as JSON text)."""
    return msgspec.json.decode(json.dumps(list(geometries)), type=list[RawGeometry | None])


def both_routes(*geometries: Any) -> tuple[GeometryBatch | NotSimple, GeometryBatch | None]:
    """(the typed route's column or its NotSimple, the raw route's column or None)."""
    text = features_text(*({"type": "Feature", "properties": {}, "geometry": g} for g in geometries))
    try:
        typed: GeometryBatch | NotSimple = encode(text)
    except NotSimple as reason:
        typed = reason
    return typed, encode_raw(raw_geometries(*geometries))


def line(*xy: float) -> list[list[float]]:
    return [list(xy[i : i + 2]) for i in range(0, len(xy), 2)]


def test_raw_route_gives_the_typed_routes_bytes_for_every_family() -> None:
    ring = line(0, 0, 1, 0, 1, 1, 0, 0)
    batches = [
        [point(1.5, -2), None, {"type": "MultiPoint", "coordinates": line(3, 4, 190, 0)}, point(-180, 90)],
        [{"type": "LineString", "coordinates": line(0, 0, 1, 1)}, {"type": "MultiLineString", "coordinates": [ring]}],
        [{"type": "Polygon", "coordinates": [ring, ring]}, None, {"type": "MultiPolygon", "coordinates": [[ring]] * 3}],
        [{"type": "Polygon", "coordinates": [line(0, 0, 1e-7, 5e300, 0, 0)]}],  # a coordinate far out: left out
        [point(0, 0)] * 3,
        [None, None],
    ]
    for geometries in batches:
        typed, raw = both_routes(*geometries)
        assert raw is not None and raw == typed


@pytest.mark.parametrize(
    "geometry",
    [
        point(1, 2, 3),  # Z: the typed route keeps XY
        {"type": "LineString", "coordinates": [[1, 2, 3], [4]]},  # as many numbers as XY pairs, unevenly
        {"type": "LineString", "coordinates": [[1, [2]], [3, 4]]},
        {"type": "LineString", "coordinates": [1, [2, 3, 4]]},
        {"type": "Polygon", "coordinates": [[[1, 2], [3, 4]], []]},
        {"type": "Polygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[[[1, 2]]]]},  # a multipolygon's nesting under a polygon's type
        {"type": "MultiPoint", "coordinates": [[1, "2"]]},
        {"type": "MultiPoint", "coordinates": [[1, True]]},
        {"type": "MultiPoint", "coordinates": [[1, None]]},
        {"type": "Point", "coordinates": [10**30, 1]},  # past 64 bits: simdjson does not read it
    ],
)
def test_raw_route_leaves_unusual_coordinates_to_the_typed_route(geometry: dict) -> None:
    typed, raw = both_routes(point(0, 0), geometry)
    assert raw is None, typed


def test_raw_route_leaves_mixed_families_to_the_typed_route() -> None:
    typed, raw = both_routes(point(0, 0), {"type": "LineString", "coordinates": line(0, 0, 1, 1)})
    assert raw is None and isinstance(typed, NotSimple)


_NUMBER = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-200, max_value=200),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what simdjson reads as integers
    st.sampled_from([0, -0.0, 180, -180, 90, -90, 180.0000001, 1e-320]),
    st.sampled_from([180.00000000000006, -90.00000000000001, 180.000000999, -180.000001001, 90.0000011]),  # bounds
)
_POSITION = st.lists(_NUMBER, min_size=2, max_size=2)
_ODD_NUMBER = st.one_of(_NUMBER, st.integers(), st.booleans(), st.none(), st.just("1"))
_ODD_POSITION = st.one_of(_POSITION, st.lists(_ODD_NUMBER, min_size=0, max_size=4), st.just([[1, 2]]))


def _geometries(position: st.SearchStrategy) -> st.SearchStrategy:
    points = st.lists(position, min_size=1, max_size=4)
    parts = st.lists(points, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda c: {"type": "Point", "coordinates": c}, position),
        st.builds(lambda c: {"type": "MultiPoint", "coordinates": c}, points),
        st.builds(lambda c: {"type": "LineString", "coordinates": c}, points),
        st.builds(lambda c: {"type": "MultiLineString", "coordinates": c}, parts),
        st.builds(lambda c: {"type": "Polygon", "coordinates": c}, parts),
        st.builds(lambda c: {"type": "MultiPolygon", "coordinates": c}, st.lists(parts, min_size=1, max_size=2)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _geometries(_ODD_POSITION)), max_size=6))
def test_raw_route_agrees_with_the_typed_route_or_declines(geometries: list[Any]) -> None:
    typed, raw = both_routes(*geometries)
    if isinstance(typed, NotSimple):
        assert raw is None
    elif raw is not None:
        assert raw == typed


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Point", "LineString", "Polygon"]), st.data())
def test_raw_route_takes_every_usual_batch(family: str, data: st.DataObject) -> None:
    """Two numbers per position, one family, single and multi geometries mixed or not: never declined."""
    geometries = data.draw(st.lists(st.one_of(st.none(), _geometries(_POSITION)), max_size=6))
    geometries = [g for g in geometries if g is None or g["type"].removeprefix("Multi") == family]
    typed, raw = both_routes(*geometries)
    assert raw is not None and raw == typed
