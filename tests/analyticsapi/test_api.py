"""POST /api/send-analytics: validation at the edge, one Redis round trip, one drain job for many events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis import ConnectionPool, Redis
from redis.connection import Connection

from analyticsapi import buffer
from core.connections import queue
from core.runtime import Runtime


def stream_messages(redis: Redis, sink: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"m"]) for _id, fields in redis.xrange(buffer.stream_key(sink))]


def test_example_payloads_are_accepted_and_buffered(post_event, payloads, redis) -> None:
    for payload in payloads:
        response = post_event(payload)
        assert response.status_code == 200
        assert response.get_json() == {"success": True}
    messages = stream_messages(redis, "mixpanel")
    assert [m["event"] for m in messages] == ["resource download", "dataset create", "robot api call"]
    first = messages[0]
    assert first["token"] == payloads[0]["mixpanel_token"]
    assert first["distinct_id"] == payloads[0]["mixpanel_tracking_id"]
    assert first["time"] == payloads[0]["mixpanel_meta"]["time"]
    assert first["properties"] == payloads[0]["mixpanel_meta"]
    assert stream_messages(redis, "ga4") == []  # send_ga is false in every example


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("not json at all", "JSON object"),
        ([1, 2], "JSON object"),
        ({"send_mixpanel": True}, "event_name"),
        ({"event_name": "x", "send_mixpanel": False, "send_ga": False}, "nothing to send"),
        ({"event_name": "x", "send_mixpanel": True, "mixpanel_tracking_id": "u"}, "mixpanel_token"),
        ({"event_name": "x", "send_mixpanel": True, "mixpanel_token": "t"}, "mixpanel_tracking_id"),
        ({"event_name": "x", "send_ga": True, "ga_meta": {}}, "ga_meta"),
        ({"event_name": "x", "send_ga": "maybe", "ga_meta": {"ec": "a"}}, "send_ga"),
        (
            {
                "event_name": "x",
                "send_mixpanel": True,
                "mixpanel_token": "t",
                "mixpanel_tracking_id": "u",
                "mixpanel_meta": {"time": "yesterday"},
            },
            "time",
        ),
    ],
)
def test_invalid_bodies_get_400_with_a_clear_error(client, redis, body, phrase) -> None:
    if isinstance(body, str):
        response = client.post("/api/send-analytics", data=body, content_type="application/json")
    else:
        response = client.post("/api/send-analytics", json=body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["success"] is False
    assert phrase in answer["error"]
    assert redis.xlen(buffer.stream_key("mixpanel")) == 0


class CountingConnection(Connection):
    """Counts the packets sent to Redis: one per command, or one per pipeline/MULTI."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def test_an_accepted_event_costs_one_redis_round_trip(runtime: Runtime, client, payloads) -> None:
    settings = runtime.settings
    pool = ConnectionPool(
        host=settings.redis.host, port=settings.redis.port, db=settings.redis.db, connection_class=CountingConnection
    )
    counting = Redis(connection_pool=pool)
    counting.ping()
    runtime.__dict__["redis"] = counting
    payload = {**payloads[0], "send_ga": True}  # two streams and the drain flag, still one round trip
    client.post("/api/send-analytics", json=payload)  # Redis may not know the script yet: this loads it
    for number in range(3):
        CountingConnection.sent = 0
        response = client.post("/api/send-analytics", json=payload)
        assert response.get_json() == {"success": True}
        assert CountingConnection.sent == 1, f"request {number}"
    assert counting.xlen(buffer.stream_key("ga4")) == 4


def test_events_are_buffered_after_redis_forgot_the_script(runtime: Runtime, client, payloads) -> None:
    """A restarted Redis has no scripts: the buffering script is loaded again, the event is not lost."""
    assert client.post("/api/send-analytics", json=payloads[0]).get_json() == {"success": True}
    runtime.redis.script_flush()
    assert client.post("/api/send-analytics", json=payloads[0]).get_json() == {"success": True}
    assert runtime.redis.xlen(buffer.stream_key("mixpanel")) == 2


def test_many_events_make_one_drain_job(post_event, payloads, runtime: Runtime) -> None:
    for _ in range(20):
        for payload in payloads:
            assert post_event(payload).status_code == 200
    jobs = queue("analytics_q", runtime.redis).get_jobs()
    assert len(jobs) == 1
    assert jobs[0].func_name == "analyticsapi.tasks.drain"
    assert list(jobs[0].args) == ["request"]  # no event, no token, no secret in the job
    assert not jobs[0].kwargs


def test_ga_hits_are_not_buffered_without_ga4_credentials(settings_env, payloads) -> None:
    from app.factory import create_app
    from app.settings import Settings

    env = {k: v for k, v in settings_env.items() if not k.startswith("GA4_")}
    rt = Runtime(Settings.from_env(env))
    try:
        client = create_app(runtime=rt).test_client()
        answer = client.post("/api/send-analytics", json={**payloads[0], "send_ga": True})
        assert answer.get_json() == {"success": True}
        assert rt.redis.xlen(buffer.stream_key("ga4")) == 0
        assert rt.redis.xlen(buffer.stream_key("mixpanel")) == 1
    finally:
        rt.close()


def test_redis_down_answers_503_in_the_contract_shape(settings_env, payloads) -> None:
    from app.factory import create_app
    from app.settings import Settings

    rt = Runtime(Settings.from_env({**settings_env, "HDX_REDIS_PORT": "1"}))
    client = create_app(runtime=rt).test_client()
    response = client.post("/api/send-analytics", json=payloads[0])
    assert response.status_code == 503
    assert response.get_json()["success"] is False
    assert "not accepted" in response.get_json()["error"]
