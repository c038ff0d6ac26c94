"""Under a burst, batches are real batches: Mixpanel gets at most one request per 50 events of a token, and
GA4 requests are full (25 events) whenever 25 are waiting (HDXRQ_ANALYTICS_LINGER_MS).

The burst of issue #20 (300 events in 0.4 s) is played on an injected clock: events arrive while the drain
waits between passes *and* while a request to a destination is in flight (each request takes
``REQUEST_SEC``), as they do in production. Nothing sleeps.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from analyticsapi import drain
from analyticsapi.buffer import stream_key
from analyticsapi.events import parse_event
from core.runtime import Runtime
from core.settings import Settings
from tests.fakes import Call, FakeGa4, FakeMixpanel, Reply, json_reply

BURST_EVENTS = 300
BURST_SEC = 0.4
REQUEST_SEC = 0.004
"""How long one request to Mixpanel or GA4 takes on the injected clock."""
OTHER_TOKEN = "fedcba9876543210fedcba9876543210"
OTHER_IP = "34.240.12.9"


class Clock:
    """Time the test moves: the drain's ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.start = self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Burst(Clock):
    """A clock on which ``BURST_EVENTS`` events arrive evenly over ``BURST_SEC``."""

    def __init__(self, runtime: Runtime, payload: dict[str, Any]) -> None:
        super().__init__()
        self.redis, self.payload = runtime.redis, payload
        self.arrived = 0

    def event(self, number: int) -> dict[str, Any]:
        """Every third event is another project's (token) and another visitor's (GA4 client)."""
        body = {**self.payload, "send_ga": True, "mixpanel_meta": {**self.payload["mixpanel_meta"], "n": number}}
        if number % 3 == 2:
            body["mixpanel_token"] = OTHER_TOKEN
            body["ga_meta"] = {**body["ga_meta"], "uip": OTHER_IP}
        return body

    def advance(self, seconds: float) -> None:
        """Move the clock; buffer the events due by then, through the edge's own function."""
        self.now += seconds
        due = min(BURST_EVENTS, int((self.now - self.start) / BURST_SEC * BURST_EVENTS) + 1)
        for number in range(self.arrived, due):
            drain.append(self.redis, parse_event(self.event(number), now=self.now))
        self.arrived = max(self.arrived, due)

    def taking_time(self, reply: Reply) -> Any:
        """A destination's answer that takes ``REQUEST_SEC`` on this clock (events arrive meanwhile)."""

        def answer(call: Call) -> Reply:
            self.advance(REQUEST_SEC)
            return reply

        return answer


@pytest.fixture
def burst(runtime: Runtime, payloads, fake_mixpanel: FakeMixpanel, fake_ga4: FakeGa4) -> Burst:
    clock = Burst(runtime, payloads[0])
    fake_mixpanel.route("POST", "/import", clock.taking_time(json_reply({"status": 1, "error": None})))
    fake_ga4.route("POST", FakeGa4.PATH, clock.taking_time(Reply(status=204)))
    return clock


def run_burst(runtime: Runtime, burst: Burst, linger_ms: int) -> dict[str, Any]:
    """The first event requests a drain; the drain runs (lingering 1 s when idle) until the burst is out."""
    settings: Settings = runtime.settings.model_copy(
        update={"analytics_linger_ms": linger_ms, "analytics_drain_idle_sec": 1.0}
    )
    burst.advance(0.0)  # the first event: its request would enqueue this drain
    return drain.run_drain(runtime.redis, settings, clock=burst, sleep=burst.advance, delivery_clock=burst)


def mixpanel_requests(fake: FakeMixpanel) -> Counter[str]:
    return Counter(FakeMixpanel.token_of(call) for call in fake.import_calls())


def ga4_sizes(fake: FakeGa4) -> list[tuple[str, int]]:
    return [(call.json()["ip_override"], len(call.json()["events"])) for call in fake.collect_calls()]


def test_a_burst_reaches_mixpanel_in_few_requests_and_ga4_in_full_ones(
    runtime: Runtime, burst: Burst, fake_mixpanel: FakeMixpanel, fake_ga4: FakeGa4
) -> None:
    report = run_burst(runtime, burst, linger_ms=500)

    assert report["delivered"] == {"mixpanel": BURST_EVENTS, "ga4": BURST_EVENTS}
    per_token = Counter(e["properties"]["token"] for e in fake_mixpanel.imported_events())
    assert sum(per_token.values()) == BURST_EVENTS and len(per_token) == 2
    for token, requests in mixpanel_requests(fake_mixpanel).items():
        assert requests <= per_token[token] / 50, (token, requests, per_token[token])
    sizes = ga4_sizes(fake_ga4)
    per_client = Counter(ip for ip, _ in sizes)
    assert len(per_client) == 2
    assert all(size == 25 for _, size in sizes), sizes  # 200 and 100 events a client: only full requests
    assert sum(size for _, size in sizes) == BURST_EVENTS


def test_without_a_linger_the_same_burst_goes_out_in_dribbles(
    runtime: Runtime, burst: Burst, fake_mixpanel: FakeMixpanel, fake_ga4: FakeGa4
) -> None:
    """The measurement of issue #20 (300 events, 100 requests), played on the clock: the test above can fail."""
    report = run_burst(runtime, burst, linger_ms=0)

    assert report["delivered"] == {"mixpanel": BURST_EVENTS, "ga4": BURST_EVENTS}
    assert sum(mixpanel_requests(fake_mixpanel).values()) > BURST_EVENTS / 5  # about 3 events a request


def test_a_lone_event_waits_the_linger_and_no_longer(
    runtime: Runtime, payloads, fake_mixpanel: FakeMixpanel, fake_ga4: FakeGa4
) -> None:
    settings = runtime.settings.model_copy(update={"analytics_linger_ms": 300, "analytics_drain_idle_sec": 0.0})
    clock = Clock()
    sent_at: list[float] = []

    def answer(call: Call) -> Reply:
        sent_at.append(clock.now)
        return json_reply({"status": 1, "error": None})

    fake_mixpanel.route("POST", "/import", answer)
    drain.append(runtime.redis, parse_event(payloads[0]))

    report = drain.run_drain(runtime.redis, settings, clock=clock, sleep=clock.advance, delivery_clock=clock)

    assert report["delivered"] == {"mixpanel": 1}
    assert sent_at == [pytest.approx(clock.start + 0.3)]  # held for the linger, sent when it ended
    assert report["come_back_in"] is None  # nothing held back: the idle tick


def test_a_drain_ending_while_it_holds_a_batch_schedules_a_tick_for_it(
    runtime: Runtime, payloads, fake_mixpanel: FakeMixpanel
) -> None:
    """A drain whose budget ends holds nothing back silently: the next drain is due when the batch is."""
    settings = runtime.settings.model_copy(update={"analytics_linger_ms": 300})
    clock = Clock()
    drain.append(runtime.redis, parse_event(payloads[0]))
    delivery = drain.Delivery.for_settings(runtime.redis, settings, clock=clock)
    try:
        held = delivery.run()
        assert held.delivered == {} and held.held_for == pytest.approx(0.3)
        assert held.come_back_in == pytest.approx(0.3)  # run_drain schedules its tick then
        clock.now += 0.3
        assert delivery.run().delivered == {"mixpanel": 1}
    finally:
        delivery.close()
    assert len(fake_mixpanel.import_calls()) == 1


def test_the_linger_counts_from_the_events_arrival_when_the_worker_clock_agrees(
    runtime: Runtime, payloads, fake_mixpanel: FakeMixpanel
) -> None:
    """A drain that starts late (queued behind other jobs) does not make the events wait a linger more."""
    settings = runtime.settings.model_copy(update={"analytics_linger_ms": 300})
    drain.append(runtime.redis, parse_event(payloads[0]))
    ((entry_id, _),) = runtime.redis.xrange(stream_key("mixpanel"))
    arrived = int(entry_id.split(b"-")[0]) / 1000  # Redis's clock
    clock = Clock()
    clock.now = arrived + 0.1  # the drain's first look, 100 ms after the event arrived
    delivery = drain.Delivery.for_settings(runtime.redis, settings, clock=clock)
    try:
        assert delivery.run().held_for == pytest.approx(0.2)
        clock.now = arrived + 0.3
        assert delivery.run().delivered == {"mixpanel": 1}
    finally:
        delivery.close()
