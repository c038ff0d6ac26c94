"""The geometry column of the GeoJSON fast path, encoded here or in forked worker processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest
import shapely

from importapi.ewkb import NULL, Encoders, NotSimple, encode

from .conftest import feature, polygon


def point(x: float, y: float) -> dict:
    return {"type": "Point", "coordinates": [x, y]}


def features_text(*features: dict) -> bytes:
    return orjson.dumps(list(features))


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


def _ranges(text: bytes, pieces: list[bytes]) -> list[tuple[int, int]]:
    """Byte ranges of each piece (a run of features) in the file."""
    ranges, start = [], 0
    for piece in pieces:
        start = text.index(piece, start)
        ranges.append((start, start + len(piece)))
        start += len(piece)
    return ranges


def test_workers_answer_in_submission_order_as_this_process_does(tmp_path: Path) -> None:
    batches = [[feature(point(i + k, k)) for k in range(50)] for i in range(7)]
    batches[3][4] = feature(point(500, 0))
    pieces = [orjson.dumps(batch)[1:-1] for batch in batches]
    text = b'{"type": "FeatureCollection", "features": [' + b",".join(pieces) + b"]}"
    path = tmp_path / "points.geojson"
    path.write_bytes(text)
    ranges = _ranges(text, pieces)

    answers = {}
    for workers in (0, 3):
        with Encoders(path, workers) as encoders:
            pids = [worker.pid for worker in encoders._workers]
            for start, end in ranges:
                encoders.submit(start, end, b"[" + text[start:end] + b"]")
            answers[workers] = [encoders.result() for _ in ranges]
        for pid in pids:  # reaped: no zombie, no orphan left running
            assert not Path(f"/proc/{pid}").exists()

    assert len(pids) == 3
    assert answers[3] == answers[0]
    assert [len(column.geometries) for column in answers[3]] == [50, 50, 50, 49, 50, 50, 50]
    assert answers[3][3].removed == [4]


def test_a_worker_that_dies_makes_the_batch_not_simple(tmp_path: Path) -> None:
    piece = orjson.dumps([feature(point(1, 1))])[1:-1]
    path = tmp_path / "one.geojson"
    path.write_bytes(b'{"type": "FeatureCollection", "features": [' + piece + b"]}")
    start = path.read_bytes().index(piece)

    with Encoders(path, 2) as encoders:
        os.kill(encoders._workers[0].pid, signal.SIGKILL)
        encoders.submit(start, start + len(piece), b"[" + piece + b"]")
        encoders.submit(start, start + len(piece), b"[" + piece + b"]")
        with pytest.raises(NotSimple, match="ended early"):
            encoders.result()
        assert encoders.result().geometries  # the other worker still answers
