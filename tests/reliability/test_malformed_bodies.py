"""Malformed bodies on every endpoint of the served API (uWSGI): wrong types, huge strings, deep nesting,
invalid UTF-8, broken JSON, wrong content types and oversize bodies. Never a 5xx, never a stack trace, always
a JSON answer, and CKAN's endpoints answer in their contract's own failure shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import TEST_ADMIN_TOKEN

from .conftest import Proc, serve_api

HUGE = 700 * 1024
BODIES: dict[str, tuple[bytes, str]] = {
    "broken JSON": (b'{"username": "x", "old_dataset_dict": {', "application/json"),
    "invalid UTF-8": (b'{"username": "\xff\xfe\xc3\x28", "event_name": "\x80"}', "application/json"),
    "JSON array": (b"[1, 2, 3]", "application/json"),
    "JSON string": (b'"hello"', "application/json"),
    "JSON number": (b"12345678901234567890123456789", "application/json"),
    "JSON null": (b"null", "application/json"),
    "wrong types": (
        json.dumps(
            {
                "username": 5,
                "old_dataset_dict": "x",
                "new_dataset_dict": [],
                "event_name": {"a": 1},
                "send_mixpanel": "maybe",
                "send_ga": 3,
                "mixpanel_meta": [],
                "hxl_proxy_source_info_url": 7,
                "fs_check_info": {"x": 1},
                "action": ["x"],
                "inputs": "not an object",
                "run_at": -1,
                "interval": "forever",
            }
        ).encode(),
        "application/json",
    ),
    "huge string": (json.dumps({"username": "x" * HUGE, "event_name": "y" * HUGE}).encode(), "application/json"),
    "deep nesting": (b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "application/json"),
    "deep objects": (b'{"a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", "application/json"),
    "NUL bytes": (b'{"username": "a\\u0000b", "event_name": "\\u0000"}', "application/json"),
    "lone surrogates": (b'{"username": "\\ud800", "event_name": "\\udfff"}', "application/json"),
    "form instead of JSON": (b"username=x&old_dataset_dict=y", "application/x-www-form-urlencoded"),
    "plain text": (b"\x00\x01\x02 not json at all", "text/plain"),
    "empty body": (b"", "application/json"),
}
OVERSIZE_MB = 3  # the served API below accepts at most 2 MB


def concrete(path: str) -> str:
    """The document's path with plausible values in its parameters."""
    values = {"z": "1", "x": "0", "y": "0", "flag": "true", "process_id": "geopreview-import"}
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "8d3c4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f"), path)


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "HDXRQ_MAX_REQUEST_MB": "2", "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": "hdx_test_action"}


@pytest.fixture
def served(spawn: Callable[..., Proc]) -> tuple[Proc, str]:
    return serve_api(spawn, {"HDXRQ_API_THREADS": "8"})


def operations(base: str) -> list[tuple[str, str]]:
    document = httpx.get(base + "/openapi.json", timeout=10).json()
    found = []
    for path, methods in document["paths"].items():
        with_body = [method for method in methods if method in ("post", "put", "patch", "delete")]
        found += [(method.upper(), concrete(path)) for method in with_body]
    return found


def test_no_endpoint_breaks_on_malformed_bodies(served: tuple[Proc, str]) -> None:
    api, base = served
    ops = operations(base)
    assert len(ops) >= 8, ops  # every body-taking endpoint of every slice is listed
    failures = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for method, path in ops:
            for auth in ({}, {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}):
                for name, (body, content_type) in BODIES.items():
                    try:
                        headers = {"Content-Type": content_type, **auth}
                        answer = http.request(method, path, content=body, headers=headers)
                    except httpx.HTTPError as error:
                        problem: str | None = f"no answer: {type(error).__name__}"
                    else:
                        problem = _problem(answer)
                    if problem:
                        failures.append(f"{method} {path} [{name}] {'admin' if auth else 'anon'}: {problem}")
    print("\n".join(failures))
    assert failures == []
    assert api.alive()
    assert "Traceback" not in api.output(), api.output()[-5000:]


def test_oversize_bodies_are_refused_in_each_contract_shape(served: tuple[Proc, str]) -> None:
    """A body over ``HDXRQ_MAX_REQUEST_MB`` is refused before it is read (the app drops it after answering);
    each request here uses a connection of its own, as CKAN's clients do."""
    api, base = served
    big = b'{"username": "' + b"x" * (OVERSIZE_MB * 1024 * 1024) + b'"}'

    def post(path: str) -> httpx.Response:
        return httpx.post(base + path, content=big, headers={"Content-Type": "application/json"}, timeout=60)

    events = post("/api/create-change-events")
    assert events.status_code == 200 and events.json()["state"] == "failure"  # CKAN's save must not fail
    fs = post("/api/file-structure-check/dataset/d/resource/r")
    assert fs.status_code == 200 and fs.json()["success"] is False
    analytics = post("/api/send-analytics")
    assert analytics.status_code == 413 and analytics.json()["success"] is False  # CKAN drops the event
    assert "larger than" in analytics.json()["error"]
    for path in ("/api/scheduler/add_job", "/processes/geopreview-import/execution"):
        assert post(path).status_code in (401, 413), path
    assert api.alive()


def test_ckan_endpoints_keep_their_failure_shapes(served: tuple[Proc, str]) -> None:
    _, base = served
    with httpx.Client(base_url=base, timeout=60) as http:
        for name, (body, content_type) in BODIES.items():
            headers = {"Content-Type": content_type}
            events = http.post("/api/create-change-events", content=body, headers=headers)
            assert events.status_code == 200, name
            assert events.json()["state"] == "failure" and events.json()["message"], name
            fs = http.post("/api/file-structure-check/dataset/d/resource/r", content=body, headers=headers)
            assert fs.status_code == 200 and fs.json()["success"] is False, name
            assert fs.json()["error_type"] == "bad-fs-check-request", name
            analytics = http.post("/api/send-analytics", content=body, headers=headers)
            assert analytics.status_code == 400 and analytics.json()["success"] is False, name


def _problem(answer: httpx.Response) -> str | None:
    if answer.status_code >= 500:
        return f"HTTP {answer.status_code}: {answer.text[:200]}"
    if "Traceback" in answer.text or 'File "/' in answer.text:
        return "stack trace in the answer"
    try:
        answer.json()
    except ValueError:
        return f"not JSON: {answer.headers.get('content-type')} {answer.text[:100]!r}"
    return None
