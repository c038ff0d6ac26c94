"""Worker lanes: which queues each worker of ``run`` takes, in which order, and what that buys.

The layout itself is checked on ``run``'s real worker processes in ``test_serve.py``; here a lane's order
is shown by what a real worker does with jobs on several of its queues, and the point of the lanes by
change events that reach the stream while a backlog of stalled imports waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app.serve import worker_commands
from core.auth import OPERATOR
from core.connections import queue
from core.queues import ALL_QUEUES, LANES, LANES_BY_NAME, QueueName, lane_layout, merge_lanes, within
from core.runtime import Runtime
from importapi import service as imports
from tests.conftest import ROOT, kill_process_tree
from tests.fakes import FakeService, Reply
from tests.waiting import wait_until

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
CHANGE = {
    "username": "lanes",
    "old_dataset_dict": {"id": "d-lanes", "name": "lanes", "title": "Before", "type": "dataset"},
    "new_dataset_dict": {"id": "d-lanes", "name": "lanes", "title": "After", "type": "dataset"},
}


def queues_of(lanes: tuple[Any, ...]) -> tuple[str, ...]:
    return merge_lanes(lanes).queues


def test_one_worker_per_lane_and_extra_workers_import() -> None:
    assert [queues_of(lanes) for lanes in lane_layout(3)] == [
        ("event_q", "fs_check_q", "default_scheduler_q"),
        ("analytics_q", "event_q", "fs_check_q", "default_scheduler_q"),
        ("geo_q", "tiles_q"),
    ]
    assert [merge_lanes(lanes).strategy for lanes in lane_layout(3)] == ["round_robin", "default", "default"]
    assert [queues_of(lanes) for lanes in lane_layout(5)][3:] == [("geo_q", "tiles_q")] * 2
    for count in range(1, 6):  # fewer workers than lanes merge the last ones: no queue is left unserved
        served = {name for lanes in lane_layout(count) for name in queues_of(lanes)}
        assert served == set(ALL_QUEUES), count
    assert [lane.name for lane in lane_layout(2)[1]] == ["analytics", "geo"]
    assert merge_lanes(lane_layout(1)[0]).strategy == "round_robin"


def test_run_starts_a_worker_with_lane_arguments_per_lane() -> None:
    commands = list(worker_commands(4).values())
    assert [command[1:] for command in commands] == [
        ["worker", "--with-scheduler", "--lane", "events"],
        ["worker", "--with-scheduler", "--lane", "analytics"],
        ["worker", "--with-scheduler", "--lane", "geo"],
        ["worker", "--with-scheduler", "--lane", "geo"],
    ]
    assert list(worker_commands(2).values())[1][3:] == ["--lane", "analytics", "--lane", "geo"]


def test_queues_limits_the_lanes_run_lays_out() -> None:
    lanes = within(LANES, ("event_q", "analytics_q"))

    assert [(lane.name, lane.queues) for lane in lanes] == [
        ("events", ("event_q",)),
        ("analytics", ("analytics_q", "event_q")),
    ]
    assert [queues_of(shared) for shared in lane_layout(3, lanes)] == [
        ("event_q",),
        ("analytics_q", "event_q"),
        ("event_q",),  # without the geo lane, an extra worker joins the first lane
    ]
    assert [command[3:] for command in worker_commands(2, lanes).values()] == [
        ["--lane", "events"],
        ["--lane", "analytics"],
    ]


def test_a_lane_worker_takes_only_the_queues_of_queues(runtime: Runtime, worker_process: RunCommand) -> None:
    _record_on(runtime, QueueName.ANALYTICS, "analytics-1")
    _record_on(runtime, QueueName.EVENT, "event-1")

    limited = worker_process("worker", "--burst", "--lane", "analytics", extra_env={"QUEUES": "analytics_q"})
    refused = worker_process("worker", "--burst", "--lane", "geo", extra_env={"QUEUES": "analytics_q"})

    assert limited.returncode == 0, limited.stderr
    assert _order(runtime) == ["analytics-1"]
    assert queue(QueueName.EVENT, runtime.redis).count == 1
    assert refused.returncode == 2 and "QUEUES names none of the queues of --lane geo" in refused.stderr


def _record_on(runtime: Runtime, name: QueueName, *values: str) -> None:
    for value in values:
        queue(name, runtime.redis).enqueue("tests.jobs.record", "order", value)


def _order(runtime: Runtime) -> list[str]:
    return [value.decode() for value in runtime.redis.lrange("order", 0, -1)]


def test_the_events_lane_takes_its_queues_in_turn(runtime: Runtime, worker_process: RunCommand) -> None:
    _record_on(runtime, QueueName.EVENT, "event-1", "event-2", "event-3")
    _record_on(runtime, QueueName.FS_CHECK, "check-1")
    _record_on(runtime, QueueName.SCHEDULER, "call-1")
    _record_on(runtime, QueueName.GEO, "import-1")

    done = worker_process("worker", "--burst", "--lane", "events")

    assert done.returncode == 0, done.stderr
    # Round robin: a waiting check or scheduled call goes after at most one change event, not after all.
    assert _order(runtime) == ["event-1", "check-1", "call-1", "event-2", "event-3"]
    assert queue(QueueName.GEO, runtime.redis).count == 1  # never an import


def test_the_geo_lane_takes_prerenders_only_when_no_import_waits(runtime: Runtime, worker_process: RunCommand) -> None:
    _record_on(runtime, QueueName.TILES, "prerender-1", "prerender-2")
    _record_on(runtime, QueueName.GEO, "import-1", "import-2")
    _record_on(runtime, QueueName.EVENT, "event-1")

    done = worker_process("worker", "--burst", "--lane", "geo")

    assert done.returncode == 0, done.stderr
    assert _order(runtime) == ["import-1", "import-2", "prerender-1", "prerender-2"]
    assert queue(QueueName.EVENT, runtime.redis).count == 1


def test_lanes_combine_and_exclude_named_queues(runtime: Runtime, worker_process: RunCommand) -> None:
    _record_on(runtime, QueueName.ANALYTICS, "analytics-1")
    _record_on(runtime, QueueName.GEO, "import-1")

    both = worker_process("worker", "--burst", "--lane", "geo", "--lane", "analytics")
    refused = worker_process("worker", "--burst", "--lane", "geo", "event_q")

    assert both.returncode == 0, both.stderr
    assert sorted(_order(runtime)) == ["analytics-1", "import-1"]
    assert refused.returncode == 2 and "name queues or --lane, not both" in refused.stderr
    assert LANES_BY_NAME["geo"].queues == (QueueName.GEO, QueueName.TILES)


@pytest.fixture
def stalling_host() -> Iterator[FakeService]:
    """A file host whose every download hangs until the test ends."""
    with FakeService("stalling-file-host") as host:
        host.route("GET", "/files/slow.geojson", Reply(stall=True))
        yield host


@pytest.fixture
def run_workers(settings_env: dict[str, str]) -> Iterator[Callable[[int], None]]:
    """Start the workers ``./hdxrq.py run`` starts (without its API: the test client is the API)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int) -> None:
        env = {"PATH": os.environ["PATH"], **settings_env, "HDXRQ_DOWNLOAD_READ_TIMEOUT_SEC": "600"}
        for command in worker_commands(count).values():
            started.append(
                subprocess.Popen(
                    [sys.executable, *command],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    yield start
    for process in started:
        kill_process_tree(process)  # the geo worker's import hangs on purpose: nothing to wait for


def _stream_length(runtime: Runtime) -> int:
    stream: Redis = runtime.stream_redis
    return int(stream.xlen(runtime.settings.event_bus.stream_name))


def test_change_events_reach_the_stream_while_imports_wait(
    runtime: Runtime, client: FlaskClient, stalling_host: FakeService, run_workers: Callable[[int], None]
) -> None:
    for _ in range(16):
        resource_id = str(uuid.uuid4())
        url = f"{stalling_host.url}/files/slow.geojson"
        imports.request_import(runtime, OPERATOR, "d-lanes", resource_id, url, "upload")
    for number in range(10):
        answer = client.post("/api/create-change-events", json={**CHANGE, "username": f"editor-{number}"})
        assert answer.get_json() == {"state": "success"}
    run_workers(3)

    wait_until(lambda: _stream_length(runtime) >= 10, timeout=60, what="the change events on the stream")

    # Every import is still waiting: queued, or hanging in its download (the geo worker's one at a time).
    waiting = queue(QueueName.GEO, runtime.redis).count
    assert waiting >= 15
    assert runtime.redis.keys("hdxrq:events:request:*") == []  # nothing left parked
    written = runtime.stream_redis.xrange(runtime.settings.event_bus.stream_name)
    assert {entry[1][b"event_type"] for entry in written} == {b"dataset-metadata-changed"}
