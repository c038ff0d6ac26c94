"""Shared helpers of the eventsapi tests: the example cases and reading the stream."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from redis import Redis

SAMPLES = Path(__file__).resolve().parent / "samples"
CASES = sorted(path.name.split("-")[1] for path in SAMPLES.glob("case-*-expected.json"))
ANY_TIME = "__ANY_UTC_ISO8601__"
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")


def load_case(number: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(old dict, new dict, expectation) of ``case-<number>``."""
    prefix = SAMPLES / f"case-{number}"
    old = json.loads(Path(f"{prefix}-old.json").read_text())
    new = json.loads(Path(f"{prefix}-new.json").read_text())
    expected = json.loads(Path(f"{prefix}-expected.json").read_text())
    return old, new, expected


def case_body(number: str) -> dict[str, Any]:
    old, new, expected = load_case(number)
    return {"username": expected["request"]["body"]["username"], "old_dataset_dict": old, "new_dataset_dict": new}


def stream_entries(redis: Redis, stream: str = "hdx_event_stream") -> list[tuple[str, dict[str, str]]]:
    """Every entry of the stream as (id, {field: value}) with text values."""
    return [
        (entry_id.decode(), {key.decode(): value.decode() for key, value in fields.items()})
        for entry_id, fields in redis.xrange(stream)
    ]


def assert_matches_expected(events: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Every key equal, except ``event_time``: the right format and one value for the whole request."""
    times = {event["event_time"] for event in events}
    assert len(times) <= 1, times
    for time in times:
        assert EVENT_TIME.match(time), time
    assert [list(event) for event in events] == [list(event) for event in expected]  # key order too
    normalised = [{**event, "event_time": ANY_TIME} for event in events]
    assert normalised == expected
