"""The express lane of send-analytics: the usual request answered before Flask, every answer as Flask's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from analyticsapi import buffer
from analyticsapi.express import ExpressLane
from app.factory import create_app
from app.settings import Settings
from core.runtime import Runtime

PATH = "/api/send-analytics"


class Recorder:
    """A WSGI app standing where Flask stands behind the lane: records what reaches it, answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.bodies.append(environ["wsgi.input"].read(length))
        start_response("299 Passed On", [("Content-Type", "text/plain")])
        return [b"passed on"]


def lane_with_recorder(app: Flask) -> tuple[Client, Recorder]:
    recorder = Recorder()
    return Client(ExpressLane(app, recorder)), recorder


def test_the_lane_answers_a_usual_event_itself_and_buffers_it(app: Flask, runtime: Runtime, payloads) -> None:
    client, recorder = lane_with_recorder(app)
    response = client.post(PATH, json=payloads[0])
    assert (response.status_code, response.get_json()) == (200, {"success": True})
    assert response.headers["Content-Type"] == "application/json"
    assert recorder.bodies == []
    assert runtime.redis.xlen(buffer.stream_key("mixpanel")) == 1


@pytest.mark.parametrize(
    "request_options",
    [
        {"method": "GET"},
        {"method": "POST", "path": "/api/send-analytics/"},
        {"method": "POST", "content_type": "text/plain"},
        {"method": "POST", "content_type": None},
        {"method": "POST", "environ_overrides": {"CONTENT_LENGTH": ""}},  # chunked: no length
    ],
    ids=["get", "other-path", "text-body", "no-content-type", "no-length"],
)
def test_anything_unusual_goes_on_to_flask_with_its_body(app: Flask, payloads, request_options) -> None:
    client, recorder = lane_with_recorder(app)
    body = json.dumps(payloads[0]).encode()
    options = {"path": PATH, "content_type": "application/json", "data": body, **request_options}
    if options["content_type"] is None:
        del options["content_type"]
    response = client.open(**options)
    assert response.status_code == 299
    assert recorder.bodies in ([body], [b""])  # without a length the recorder reads nothing


def test_a_body_over_the_limit_and_a_refused_client_go_on_to_flask(settings_env, payloads) -> None:
    body = json.dumps({**payloads[0], "padding": "x" * 2 * 1024 * 1024}).encode()
    env = {**settings_env, "HDXRQ_MAX_REQUEST_MB": "1", "HDXRQ_ALLOWED_NETWORKS": "10.0.0.0/8"}
    rt = Runtime(Settings.from_env(env))
    try:
        client, recorder = lane_with_recorder(create_app(runtime=rt))
        big = client.post(PATH, data=body, content_type="application/json", environ_base={"REMOTE_ADDR": "10.1.2.3"})
        small = json.dumps(payloads[0]).encode()
        outside = client.post(PATH, data=small, content_type="application/json")  # from 127.0.0.1
        inside = client.post(
            PATH, data=small, content_type="application/json", environ_base={"REMOTE_ADDR": "10.9.9.9"}
        )
        assert (big.status_code, outside.status_code, inside.status_code) == (299, 299, 200)
        assert recorder.bodies == [body, small]
    finally:
        rt.close()


def flask_alone(app: Flask) -> Flask:
    """The same app without its lane: every request through Flask's dispatch."""
    lane = app.wsgi_app
    assert isinstance(lane, ExpressLane)
    app.wsgi_app = lane.inner  # type: ignore[method-assign]
    return app


BODIES: list[tuple[str, Any]] = [
    ("example", None),
    ("with-ga", "ga"),
    ("not-json", b"not json at all"),
    ("bad-utf8", b'{"event_name": "\xff"}'),
    ("too-deep", b"[" * 100_000 + b"]" * 100_000),
    ("a-list", b"[1, 2]"),
    ("no-event-name", {"send_mixpanel": True}),
    ("nothing-to-send", {"event_name": "x", "send_mixpanel": False, "send_ga": False}),
    ("bad-time", "bad-time"),
    ("empty", b""),
    ("nan-and-big-int", "nan"),  # JSON Python's parser reads, the API refuses (core.finite) in both lanes
]


def encoded(body: Any, payload: dict[str, Any]) -> bytes:
    if body is None:
        return json.dumps(payload).encode()
    if body == "ga":
        return json.dumps({**payload, "send_ga": True}).encode()
    if body == "nan":
        text = json.dumps({**payload, "mixpanel_meta": {**payload["mixpanel_meta"], "n": 10**30}})
        return text.replace(str(10**30), str(10**30) + ', "score": NaN').encode()
    if body == "bad-time":
        return json.dumps({**payload, "mixpanel_meta": {"time": "yesterday"}}).encode()
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize(("name", "body"), BODIES, ids=[name for name, _ in BODIES])
def test_lane_and_flask_give_the_same_answer_and_buffer_the_same(settings_env, payloads, name, body) -> None:
    answers, buffered = [], []
    for through_flask in (False, True):
        rt = Runtime(Settings.from_env(settings_env))
        try:
            rt.redis.flushdb()
            app = create_app(runtime=rt)
            client = (flask_alone(app) if through_flask else app).test_client()
            response = client.post(PATH, data=encoded(body, payloads[0]), content_type="application/json")
            response.close()
            drains = rt.redis.llen("rq:queue:analytics_q")  # the drain requested after the answer went out
            answers.append((response.status_code, response.get_data(), sorted(response.headers.items()), drains))
            buffered.append(
                {sink: [f[b"m"] for _, f in rt.redis.xrange(buffer.stream_key(sink))] for sink in buffer.SINKS}
            )
        finally:
            rt.redis.flushdb()
            rt.close()
    assert answers[0] == answers[1]
    assert buffered[0] == buffered[1]
    accepted = name in ("example", "with-ga")
    assert (answers[0][0], answers[0][3]) == ((200, 1) if accepted else (400, 0))


def test_requests_the_lane_answers_are_timed_in_the_metrics(app: Flask, client, payloads) -> None:
    for _ in range(3):
        client.post(PATH, json=payloads[0]).close()
    scrape = client.get("/metrics").get_data(as_text=True)
    count = next(
        line
        for line in scrape.splitlines()
        if line.startswith("hdxrq_http_request_duration_seconds_count")
        and 'endpoint="/api/send-analytics"' in line
        and 'status="200"' in line
    )
    assert float(count.rsplit(" ", 1)[1]) == 3
