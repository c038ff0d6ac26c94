"""Reading old jobs' pickles: plain data only, and nothing named is ever looked up, let alone called."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import os
import pickle
import zlib
from typing import Any

import pytest

from app.oldjobs import MAX_DATA_BYTES, OldJob, Source, UnreadableJob, decode_data, restricted_loads


def pickled(value: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(value, protocol=protocol)


@pytest.mark.parametrize("protocol", [3, 4, 5])  # rq 1.13 pickles with HIGHEST_PROTOCOL (5)
def test_plain_data_and_rq_schedulers_timedelta_load(protocol: int) -> None:
    value = {
        "text": "é", "bytes": b"\x00", "int": 2**70, "float": 1.5, "bool": True, "none": None,
        "list": [1, (2, 3)], "delay": dt.timedelta(minutes=5), "when": dt.datetime(2026, 12, 3, 8, 0),
    }  # fmt: skip
    assert restricted_loads(pickled(value, protocol)) == value


class Persistent(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return "ref" if obj == "marker" else None


def persistent_pickle() -> bytes:
    buffer = io.BytesIO()
    Persistent(buffer).dump(["marker"])
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (pickled(os.system), "names posix.system"),
        (pickled(collections.OrderedDict(a=1)), "names collections.OrderedDict"),
        (pickled(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), "names datetime.timezone"),
        (pickled({1, 2}), "holds a set"),
        (pickled(bytearray(b"x")), "holds a bytearray"),
        (persistent_pickle(), "persistent object"),
        (pickled({"a": 1})[:-3], "not readable"),
    ],
)
def test_anything_else_is_refused_saying_what(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableJob, match=reason):
        restricted_loads(data)


def test_rq_job_data_is_decoded_and_hdxrqs_own_json_is_left_out() -> None:
    task = {"resource_id": "r"}
    data = zlib.compress(pickled(("importapi.tasks.create_preview.create_preview_task", None, [task], {})))
    assert decode_data(data) == ("importapi.tasks.create_preview.create_preview_task", (task,), {})
    assert decode_data(zlib.compress(json.dumps(["eventsapi.tasks.x", None, [], {}]).encode())) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not zlib", "not zlib-compressed"),
        (zlib.compress(b"\0" * (MAX_DATA_BYTES + 1)), "larger than 64 MB"),
        (zlib.compress(pickled(("f", None, []))), "not rq's"),
        (zlib.compress(pickled(("f", "self", [], {}))), "plain function"),
        (zlib.compress(pickled(("f", None, "args", {}))), "arguments"),
    ],
)
def test_data_that_is_not_rqs_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableJob, match=reason):
        decode_data(data)


@pytest.mark.parametrize(
    ("enqueued_at", "expected"),
    [
        ("2024-10-07T14:02:16.123456Z", dt.datetime(2024, 10, 7, 14, 2, 16, 123456, tzinfo=dt.UTC)),
        ("2024-10-07T14:02:16Z", dt.datetime(2024, 10, 7, 14, 2, 16, tzinfo=dt.UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_the_time_rq_queued_a_job_is_read_when_legible(enqueued_at: str | None, expected: dt.datetime | None) -> None:
    job = OldJob("id", "event_q", Source.QUEUED, "f", (), {}, enqueued_at)
    assert job.enqueued_time == expected
