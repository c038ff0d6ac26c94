"""When drains run (request flag, ticks, worker start) and the operator commands."""

from __future__ import annotations

import json

from rq.registry import ScheduledJobRegistry

from analyticsapi import drain as drain_module
from analyticsapi.ga4 import event_name, event_params, request_body
from analyticsapi.settings import AnalyticsSettings
from analyticsapi.tasks import drain
from core.connections import queue
from core.runtime import Runtime
from tests.fakes import FakeMixpanel, json_reply

from .conftest import example_payload


def scheduled_drains(runtime: Runtime) -> list[str]:
    registry = ScheduledJobRegistry(
        "analytics_q", connection=runtime.redis, serializer=queue("x", runtime.redis).serializer
    )
    return registry.get_job_ids()


def test_a_drain_schedules_a_tick_so_nothing_waits_forever(
    post_event, payloads, runtime: Runtime, fake_mixpanel
) -> None:
    post_event(payloads[0])
    report = drain("request")
    assert report["delivered"] == {"mixpanel": 1}
    (tick,) = scheduled_drains(runtime)
    job = queue("analytics_q", runtime.redis).fetch_job(tick)
    assert list(job.args) == ["tick"]
    drain("request")  # a second drain does not pile up ticks
    assert len(scheduled_drains(runtime)) == 1


def test_a_backing_off_destination_gets_an_earlier_tick(post_event, payloads, runtime: Runtime, fake_mixpanel) -> None:
    drain("request")  # an idle tick, HDXRQ_ANALYTICS_TICK_SEC away
    post_event(payloads[0])
    fake_mixpanel.script("POST", "/import", json_reply({"status": 0, "error": "slow down"}, 429))
    report = drain("request")
    tick_sec = AnalyticsSettings.of(runtime.settings).tick_sec
    assert report["come_back_in"] is not None and report["come_back_in"] < tick_sec
    assert len(scheduled_drains(runtime)) == 2  # the earlier tick was added


def test_a_drain_clears_the_request_flag_so_new_events_request_the_next(post_event, payloads, runtime) -> None:
    post_event(payloads[0])
    q = queue("analytics_q", runtime.redis)
    assert q.count == 1
    drain("request")
    post_event(payloads[1])
    assert q.count == 2


def test_worker_start_requests_a_drain(runtime: Runtime, worker_process, fake_mixpanel: FakeMixpanel) -> None:
    payload = example_payload(1)
    from analyticsapi.events import parse_event

    drain_module.append(runtime.redis, parse_event(payload))  # buffered, but its drain job was lost
    runtime.redis.delete(drain_module.REQUESTED_KEY)
    queue("analytics_q", runtime.redis).empty()
    result = worker_process("worker", "--burst", "analytics_q")
    assert result.returncode == 0, result.stderr
    assert [e["event"] for e in fake_mixpanel.imported_events()] == [payload["event_name"]]


def test_cli_lists_and_replays_dead_letters(post_event, payloads, runtime, worker_process, fake_mixpanel) -> None:
    fake_mixpanel.script("POST", "/import", json_reply({"status": 0, "error": "invalid"}, 400))
    for payload in payloads:
        post_event(payload)
    drain("request")

    listed = worker_process("analytics", "dead-letter", "list")
    assert listed.returncode == 0, listed.stderr
    assert "'resource download'" in listed.stdout and "3 dead-lettered event(s) shown, 3 in all" in listed.stdout
    as_json = worker_process("analytics", "dead-letter", "list", "--json", "--limit", "1")
    (line,) = as_json.stdout.splitlines()
    assert json.loads(line)["message"]["event"] == "resource download"

    replayed = worker_process("analytics", "dead-letter", "replay")
    assert "replayed 3 event(s)" in replayed.stdout
    status = json.loads(worker_process("analytics", "status").stdout)
    assert status == {"mixpanel": 3, "ga4": 0, "dead_letter": 0}
    drain("request")
    assert len(fake_mixpanel.imported_events()) == 6  # 3 refused, then the same 3 accepted


def test_ga4_mapping_of_ckan_ga_meta() -> None:
    ga_meta = example_payload(1)["ga_meta"]
    assert event_name(ga_meta) == "resource_download"
    assert event_name({"ec": "api", "ea": "package_search"}) == "api_package_search"
    assert event_name({}) == "ckan_event"
    assert event_params(ga_meta) == {
        "event_category": "resource",
        "event_action": "download",
        "event_label": "wfp_food_prices_afg.csv (Afghanistan - Food Prices)",
        "cd1": "wfp",
        "cd2": "standard",
        "cd3": "afg",
        "page_location": ga_meta["dl"][:100],
        "data_source": "direct",
    }
    body = request_body([{"time": 1728288012.6542196, "insert_id": "x", "ga_meta": ga_meta}])
    assert body["client_id"] == "anonymous" and body["ip_override"] == "196.201.214.77"
    assert body["events"][0]["timestamp_micros"] == 1728288012654219
