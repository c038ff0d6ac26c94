"""Reading a resource's ``shape_info`` history and the map's extent, whatever the resource holds."""

from __future__ import annotations

import datetime
import json

import pytest
from ckanext.hdxrq import shapeinfo

NOW = datetime.datetime(2026, 12, 3, 8, 0, 0, 123456, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, []),
        ("", []),
        ("not json", []),
        (json.dumps({"state": "success"}), [{"state": "success"}]),  # a single result, as older sites store it
        (json.dumps([{"state": "failure"}, "junk", 3]), [{"state": "failure"}]),
        (json.dumps("a string"), []),
        ([{"state": "success"}], [{"state": "success"}]),
    ],
)
def test_history_reads_what_a_resource_may_hold(stored: object, expected: list[dict[str, str]]) -> None:
    assert shapeinfo.history(stored) == expected


def test_appended_stamps_the_result_in_utc_without_zone() -> None:
    (item,) = shapeinfo.appended(None, {"state": "success"}, NOW)
    assert item == {"state": "success", "timestamp": "2026-12-03T08:00:00.123456"}


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ("BOX(60.5176034 29.37725,74.8898619 38.4906733)", [60.5176034, 29.37725, 74.8898619, 38.4906733]),
        ("BOX(-180 -90,180 90)", [-180.0, -90.0, 180.0, 90.0]),
        ("BOX(1e-05 2,3 4)", [1e-05, 2.0, 3.0, 4.0]),
        ("BOX(1 2,3)", None),
        ("BOX(a b,c d)", None),
        (None, None),
    ],
)
def test_bounds_parse_postgis_extents(box: object, expected: list[float] | None) -> None:
    assert shapeinfo.bounds(box) == expected
