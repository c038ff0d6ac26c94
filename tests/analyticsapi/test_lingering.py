"""A drain keeps delivering what arrives while it runs (one job, one fork), and hands over without losing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from analyticsapi import buffer, drain, tasks
from analyticsapi.drain import DrainReport
from analyticsapi.events import parse_event
from analyticsapi.settings import AnalyticsSettings
from core.connections import queue
from core.runtime import Runtime
from tests.fakes import FakeMixpanel, json_reply

IDLE_SEC = 1.0


class Clock:
    """Monotonic time the test moves: each ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] = lambda number: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


@pytest.fixture
def lingering(runtime: Runtime) -> AnalyticsSettings:
    return AnalyticsSettings.of(runtime.settings).model_copy(update={"drain_idle_sec": IDLE_SEC})


def event(payload: dict[str, Any], number: int) -> dict[str, Any]:
    return {**payload, "mixpanel_meta": {**payload["mixpanel_meta"], "time": 1728288000.0 + number}}


def drain_jobs(runtime: Runtime) -> int:
    return queue("analytics_q", runtime.redis).count


def test_events_arriving_during_a_drain_go_out_in_the_same_job(
    post_event, payloads, runtime: Runtime, lingering: AnalyticsSettings, fake_mixpanel: FakeMixpanel
) -> None:
    post_event(event(payloads[0], 0))
    assert drain_jobs(runtime) == 1
    queue("analytics_q", runtime.redis).empty()  # this test runs that drain itself
    clock = Clock()

    def arrive(number: int) -> None:
        if number in (2, 5):  # two bursts, each while the drain is waiting for more
            post_event(event(payloads[0], number))
            post_event(event(payloads[1], number))

    clock.on_sleep = arrive
    report = drain.run_drain(runtime.redis, lingering, clock=clock, sleep=clock.sleep)

    assert report["delivered"] == {"mixpanel": 5}
    assert [len(FakeMixpanel.events_in(call)) for call in fake_mixpanel.import_calls()] == [1, 2, 2]
    assert drain_jobs(runtime) == 0  # the events during the drain enqueued no job
    # It stopped once nothing came for the idle window after the last burst.
    idle_polls = round(IDLE_SEC / drain.POLL_SEC)
    assert 5 + idle_polls <= len(clock.sleeps) <= 6 + idle_polls  # (+1: float steps may fall just short)
    assert not runtime.redis.exists(drain.REQUESTED_KEY)
    post_event(event(payloads[2], 9))  # after the drain: the next event requests the next drain
    assert drain_jobs(runtime) == 1


def test_an_event_buffered_after_the_last_pass_requests_the_next_drain(runtime: Runtime, payloads) -> None:
    drain.drain_running(runtime.redis, 60)
    # Buffered while the drain still held the flag: the edge enqueued nothing.
    assert drain.append(runtime.redis, parse_event(payloads[0])) is False
    buffer.SinkBuffer(runtime.redis, "mixpanel").ensure_group()
    report = DrainReport(active={"mixpanel"})

    drain.hand_over(runtime.redis, AnalyticsSettings.of(runtime.settings), report)

    assert drain_jobs(runtime) == 1
    assert runtime.redis.exists(drain.REQUESTED_KEY)  # set again by the request it made


def test_nothing_unread_after_the_last_pass_requests_nothing(
    post_event, payloads, runtime: Runtime, fake_mixpanel
) -> None:
    post_event(payloads[0])
    queue("analytics_q", runtime.redis).empty()
    drain.run_drain(runtime.redis, AnalyticsSettings.of(runtime.settings))
    assert drain_jobs(runtime) == 0
    assert not runtime.redis.exists(drain.REQUESTED_KEY)


def test_a_drain_that_finds_another_sender_at_work_ends_at_once_and_leaves_the_flag(
    post_event, payloads, runtime: Runtime, lingering: AnalyticsSettings, fake_mixpanel
) -> None:
    post_event(payloads[0])
    queue("analytics_q", runtime.redis).empty()
    for sink in buffer.SINKS:
        assert runtime.redis.set(drain.lease_key(sink), "another sender", nx=True, ex=30)  # a live sender holds both
    clock = Clock()

    report = drain.run_drain(runtime.redis, lingering, clock=clock, sleep=clock.sleep)

    assert clock.sleeps == [] and report["delivered"] == {}
    assert 0 < report["come_back_in"] <= 30  # a tick for when the holder's lease would expire
    assert runtime.redis.exists(drain.REQUESTED_KEY)  # the holder clears it when it is done
    assert drain_jobs(runtime) == 0


def test_a_lingering_drain_retries_a_backed_off_destination_itself(
    post_event, payloads, runtime: Runtime, lingering: AnalyticsSettings, fake_mixpanel: FakeMixpanel
) -> None:
    post_event(payloads[0])
    queue("analytics_q", runtime.redis).empty()
    fake_mixpanel.script("POST", "/import", json_reply({"status": 0, "error": "slow down"}, 429))
    long_idle = lingering.model_copy(update={"drain_idle_sec": 30.0})
    clock = Clock()

    report = drain.run_drain(runtime.redis, long_idle, clock=clock, sleep=clock.sleep, delivery_clock=clock)

    assert report["delivered"] == {"mixpanel": 1} and report["requests"] == {"mixpanel": 2}
    backoff = AnalyticsSettings.of(runtime.settings).retry_base_sec
    assert sum(clock.sleeps) >= backoff / 2  # not before the backoff ended


def test_worker_start_enqueues_a_drain_even_while_the_flag_is_held(runtime: Runtime) -> None:
    drain.drain_running(runtime.redis, 60)  # e.g. left by a drain whose worker was killed
    tasks.on_worker_start(runtime)
    assert drain_jobs(runtime) == 1
