"""The stream Redis unreachable: the served API keeps answering CKAN, change-event jobs wait and retry, and
once the event bus is back every request's events are on the stream exactly once."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from core.connections import SERIALIZER
from core.runtime import Runtime

from .conftest import Proc, RedisServer, advance_rq_clock, serve_api, wait_until
from .events import change_request, expected_entries, stream_entries

REQUESTS = 12


@pytest.fixture
def stream_server(private_redis: Callable[..., RedisServer]) -> RedisServer:
    server = private_redis()
    server.stop()  # the event bus is down before anything starts
    return server


@pytest.fixture
def settings_env(settings_env: dict[str, str], stream_server: RedisServer) -> dict[str, str]:
    return {**settings_env, "REDIS_STREAM_PORT": str(stream_server.port), "REDIS_STREAM_DB": "0"}


def retrying(runtime: Runtime) -> list[Job]:
    ids = ScheduledJobRegistry("event_q", connection=runtime.redis).get_job_ids()
    return [job for job in Job.fetch_many(ids, connection=runtime.redis, serializer=SERIALIZER) if job]


def test_events_wait_for_the_stream_redis_and_are_written_once(
    spawn: Callable[..., Proc], runtime: Runtime, stream_server: RedisServer
) -> None:
    api, base = serve_api(spawn)
    bodies = [change_request(number) for number in range(REQUESTS)]
    with httpx.Client(base_url=base, timeout=10) as http:
        for body in bodies:
            answer = http.post("/api/create-change-events", json=body)
            assert answer.status_code == 200 and answer.json() == {"state": "success"}
        assert http.get("/version").status_code == 200
        checks = http.get("/api/run-checks").json()["result"]
        assert any(check["result"] == "Failed" for check in checks)  # the outage is visible to operators

    worker = spawn("worker", "event_q")
    wait_until(lambda: len(retrying(runtime)) == REQUESTS, 60, "every change-event job to wait for a retry")
    for _ in range(3):  # still down: each attempt fails and is scheduled again, none given up
        before = {job.id: job.retries_left for job in retrying(runtime)}
        advance_rq_clock(runtime.redis, 3700, ["event_q"])
        wait_until(
            lambda before=before: {job.id: job.retries_left + 1 for job in retrying(runtime)} == before,
            60,
            "another refused attempt of every job",
        )

    stream_server.start()  # the event bus is back (same port, its AOF kept)
    advance_rq_clock(runtime.redis, 3700, ["event_q"])
    wait_until(lambda: retrying(runtime) == [] and runtime.redis.llen("rq:queue:event_q") == 0, 60, "the retries")
    stream = stream_server.client(0)
    wait_until(lambda: len(stream_entries(stream)) == len(expected_entries(bodies)), 60, "the events on the stream")
    assert stream_entries(stream) == expected_entries(bodies)  # every event, once
    assert runtime.redis.keys("hdxrq:events:request:*") == []  # parked bodies deleted after writing
    assert worker.alive() and api.alive()
