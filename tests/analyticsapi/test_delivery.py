"""Delivery into the fake Mixpanel and GA4: exact events, batching, retries, dead letters."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from analyticsapi import buffer
from analyticsapi.drain import Delivery
from analyticsapi.settings import AnalyticsSettings
from core.runtime import Runtime
from tests.fakes import FakeGa4, FakeMixpanel, Reply, json_reply

from .conftest import TEST_GA4_API_SECRET, TEST_GA4_MEASUREMENT_ID


class Clock:
    """An injected clock: delivery's backoff reads it instead of the wall clock."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def deliver(runtime: Runtime, clock: Clock | None = None, rng: Callable[[], float] = lambda: 0.0) -> Any:
    config = AnalyticsSettings.of(runtime.settings)
    delivery = Delivery.for_settings(runtime.redis, config, clock=clock or Clock(), rng=rng)
    try:
        return delivery.run()
    finally:
        delivery.close()


def backlog(runtime: Runtime, sink: str = "mixpanel") -> int:
    return buffer.SinkBuffer(runtime.redis, sink).backlog()


def test_the_worker_delivers_exact_events_to_mixpanel_import(
    post_event, payloads, burst_worker, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    for payload in payloads:
        post_event(payload)
    assert burst_worker("analytics_q")

    (call,) = fake_mixpanel.import_calls()  # three events, one token: one request
    assert FakeMixpanel.token_of(call) == payloads[0]["mixpanel_token"]
    events = FakeMixpanel.events_in(call)
    assert [e["event"] for e in events] == [p["event_name"] for p in payloads]
    for event, payload in zip(events, payloads, strict=True):
        properties = event["properties"]
        assert properties["distinct_id"] == payload["mixpanel_tracking_id"]
        assert properties["time"] == payload["mixpanel_meta"]["time"]  # event time, not send time
        assert properties["token"] == payload["mixpanel_token"]
        for key, value in payload["mixpanel_meta"].items():
            assert properties[key] == value
        assert len(properties["$insert_id"]) == 32
    assert len({e["properties"]["$insert_id"] for e in events}) == 3
    assert backlog(runtime) == 0


def test_insert_id_is_derived_from_the_request(post_event, payloads, fake_mixpanel, runtime: Runtime) -> None:
    post_event(payloads[0])
    post_event(payloads[0])  # the very same request again (a CKAN-side retry)
    changed = {**payloads[0], "mixpanel_meta": {**payloads[0]["mixpanel_meta"], "time": 1728288099.5}}
    post_event(changed)
    deliver(runtime)
    ids = [e["properties"]["$insert_id"] for e in fake_mixpanel.imported_events()]
    assert ids[0] == ids[1] != ids[2]


def test_tokens_go_in_separate_batches_and_batches_respect_the_size(
    settings_env, post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    other = {**payloads[1], "mixpanel_token": "fedcba9876543210fedcba9876543210"}
    for number in range(12):
        event = {**payloads[0], "mixpanel_meta": {**payloads[0]["mixpanel_meta"], "time": 1728288000.0 + number}}
        post_event(event)
        post_event(other)
    runtime.__dict__["settings"] = runtime.settings.updated(analyticsapi={"mixpanel_batch_size": 5})
    report = deliver(runtime)

    calls = fake_mixpanel.import_calls()
    sizes = [(FakeMixpanel.token_of(c), len(FakeMixpanel.events_in(c))) for c in calls]
    first, second = payloads[0]["mixpanel_token"], other["mixpanel_token"]
    assert sorted(sizes) == sorted([(first, 5), (first, 5), (first, 2), (second, 5), (second, 5), (second, 2)])
    for call in calls:
        assert {e["properties"]["token"] for e in FakeMixpanel.events_in(call)} == {FakeMixpanel.token_of(call)}
    assert report.delivered == {"mixpanel": 24}


def test_a_429_is_retried_after_backoff_with_the_same_insert_ids(
    post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    for payload in payloads:
        post_event(payload)
    fake_mixpanel.script("POST", "/import", Reply(429, {"status": 0, "error": "rate limited"}, {"Retry-After": "7"}))
    clock = Clock()
    first = deliver(runtime, clock)
    assert first.delivered == {} and first.come_back_in is not None and first.come_back_in >= 7
    assert backlog(runtime) == 3  # claimed, not popped

    again = deliver(runtime, clock)  # still backing off: no request
    assert len(fake_mixpanel.import_calls()) == 1 and again.delivered == {}

    clock.now += first.come_back_in
    done = deliver(runtime, clock)
    assert done.delivered == {"mixpanel": 3}
    rejected, accepted = (FakeMixpanel.events_in(c) for c in fake_mixpanel.import_calls())
    assert [e["properties"]["$insert_id"] for e in rejected] == [e["properties"]["$insert_id"] for e in accepted]
    assert backlog(runtime) == 0


def test_backoff_grows_exponentially_with_jitter_on_5xx_and_connection_errors(
    post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    post_event(payloads[0])
    fake_mixpanel.script(
        "POST", "/import", Reply(500, "oops"), Reply(503, "busy"), Reply(drop=True), Reply(502, "bad gateway")
    )
    clock = Clock()
    delays = []
    for _ in range(4):
        report = deliver(runtime, clock, rng=lambda: 0.5)
        delays.append(report.come_back_in)
        clock.now += report.come_back_in
    assert delays == [0.75, 1.5, 3.0, 6.0]  # base 1 s doubling, 3/4 of each step with this jitter draw
    assert deliver(runtime, clock).delivered == {"mixpanel": 1}


def test_a_400_dead_letters_the_batch_and_replay_delivers_it_once(
    post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    for payload in payloads:
        post_event(payload)
    fake_mixpanel.script("POST", "/import", json_reply({"status": 0, "error": "bad property"}, 400))
    report = deliver(runtime)
    assert report.dead_lettered == {"mixpanel": 3}
    assert backlog(runtime) == 0
    dead = buffer.dead_letters(runtime.redis)
    assert [d["message"]["event"] for d in dead] == [p["event_name"] for p in payloads]
    assert {d["status"] for d in dead} == {400} and "bad property" in dead[0]["reason"]

    assert buffer.replay_dead_letters(runtime.redis) == 3
    assert buffer.dead_letters(runtime.redis) == []
    assert deliver(runtime).delivered == {"mixpanel": 3}
    rejected, accepted = (FakeMixpanel.events_in(c) for c in fake_mixpanel.import_calls())
    assert [e["properties"]["$insert_id"] for e in rejected] == [e["properties"]["$insert_id"] for e in accepted]


def test_too_many_retryable_failures_end_in_the_dead_letter_list(
    post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    post_event(payloads[0])
    runtime.__dict__["settings"] = runtime.settings.updated(analyticsapi={"max_attempts": 3})
    fake_mixpanel.route("POST", "/import", Reply(500, "down"))
    clock = Clock()
    for _ in range(3):
        report = deliver(runtime, clock)
        clock.now += report.come_back_in or 0
    assert report.dead_lettered == {"mixpanel": 1}
    assert "gave up after 3 attempts" in buffer.dead_letters(runtime.redis)[0]["reason"]
    assert len(fake_mixpanel.import_calls()) == 3


def test_ga4_gets_25_events_a_request_with_credentials_in_the_url(
    post_event, payloads, fake_ga4: FakeGa4, fake_mixpanel: FakeMixpanel, runtime: Runtime
) -> None:
    for number in range(30):
        meta = {**payloads[0]["mixpanel_meta"], "time": 1728288000.0 + number}
        post_event({**payloads[0], "send_mixpanel": False, "send_ga": True, "mixpanel_meta": meta})
    report = deliver(runtime)
    assert report.delivered == {"ga4": 30}
    assert fake_mixpanel.import_calls() == []
    calls = fake_ga4.collect_calls()
    assert [len(c.json()["events"]) for c in calls] == [25, 5]
    for call in calls:
        assert call.query == {"measurement_id": [TEST_GA4_MEASUREMENT_ID], "api_secret": [TEST_GA4_API_SECRET]}
        body = call.json()
        assert body["client_id"] == "anonymous" and body["ip_override"] == "196.201.214.77"
    first = calls[0].json()["events"][0]
    assert first["name"] == "resource_download"
    assert first["timestamp_micros"] == 1728288000_000000
    assert first["params"]["event_label"] == payloads[0]["ga_meta"]["el"]


def test_mixpanel_and_ga4_fail_independently(post_event, payloads, fake_ga4: FakeGa4, fake_mixpanel, runtime) -> None:
    post_event({**payloads[0], "send_ga": True})
    fake_ga4.script("POST", FakeGa4.PATH, Reply(503, "busy"))
    clock = Clock()
    first = deliver(runtime, clock)
    assert first.delivered == {"mixpanel": 1}
    clock.now += first.come_back_in
    assert deliver(runtime, clock).delivered == {"ga4": 1}
    assert len(fake_mixpanel.import_calls()) == 1  # Mixpanel is not sent again because GA4 failed
    assert len(fake_ga4.collect_calls()) == 2


def test_the_ga4_secret_never_reaches_logs_or_errors(post_event, payloads, fake_ga4, runtime, caplog) -> None:
    post_event({**payloads[0], "send_mixpanel": False, "send_ga": True})
    fake_ga4.script("POST", FakeGa4.PATH, Reply(drop=True))
    fake_ga4.script("POST", FakeGa4.PATH, Reply(400, "bad"))
    clock = Clock()
    first = deliver(runtime, clock)
    clock.now += first.come_back_in
    deliver(runtime, clock)
    dead = buffer.dead_letters(runtime.redis)
    assert len(dead) == 1
    assert TEST_GA4_API_SECRET not in caplog.text
    assert TEST_GA4_API_SECRET not in str(dead)


def test_mixpanel_requests_are_form_posts_the_library_makes(post_event, payloads, fake_mixpanel, runtime) -> None:
    post_event(payloads[0])
    deliver(runtime)
    (call,) = fake_mixpanel.import_calls()
    form = parse_qs(call.body.decode())
    assert set(form) >= {"data", "verbose"}
    expected = base64.b64encode(f"{payloads[0]['mixpanel_token']}:".encode()).decode()
    assert call.header("Authorization") == f"Basic {expected}"
