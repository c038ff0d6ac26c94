"""NaN and Infinity on every JSON endpoint that stores or forwards values: each body below is valid for its
endpoint except for one non-finite number, and each must be refused with nothing stored or queued.

The two notification endpoints whose contract fixes a 200 failure answer (a non-2xx from
create-change-events fails the user's save in CKAN) answer that way; every other one answers 400.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.runtime import Runtime

NAN = float("nan")
CONTRACT_200 = {"/api/create-change-events", "/api/file-structure-check/dataset/d1/resource/r1"}
NON_FINITE = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "1e999"}


def bodies() -> dict[str, dict[str, Any]]:
    """A valid body per endpoint, with ``NAN`` where a number goes."""
    dataset = {"type": "dataset", "id": "d1", "name": "d1", "num_of_rows": NAN, "resources": []}
    return {
        "/api/send-analytics": {
            "event_name": "page view",
            "mixpanel_meta": {"time": 1700000000, "score": NAN},
            "ga_meta": {},
            "mixpanel_tracking_id": "t1",
            "mixpanel_token": "mp-token",
            "send_mixpanel": True,
            "send_ga": False,
        },
        "/api/create-change-events": {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": dataset},
        "/api/file-structure-check/dataset/d1/resource/r1": {
            "hxl_proxy_source_info_url": "https://proxy.example.org/api/source-info?url=x",
            "fs_check_info": "[]",
            "priority": NAN,
        },
        "/api/scheduler/add_job": {
            "action": "hdx_test_action",
            "method": "post",
            "sch_minutes": 1,
            "api_params": {"x": NAN},
        },
        "/processes/ckan-call/execution": {"inputs": {"action": "hdx_test_action", "api_params": {"weight": NAN}}},
        "/processes/analytics-send/execution": {
            "inputs": {
                "event_name": "e",
                "mixpanel_meta": {"v": NAN},
                "mixpanel_tracking_id": "t",
                "mixpanel_token": "k",
                "send_mixpanel": True,
            }
        },
        "/processes/change-detection/execution": {
            "inputs": {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": dataset}
        },
        "/processes/file-structure-check/execution": {
            "inputs": {
                "dataset_id": "d1",
                "resource_id": "r1",
                "hxl_proxy_source_info_url": "https://p.example/x",
                "fs_check_info": "[]",
            },
            "note": NAN,
        },
        "/processes/geopreview-import/execution": {
            "inputs": {"resource_id": "r1", "url": "https://files.example.org/a.geojson"},
            "weight": NAN,
        },
    }


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": "hdx_test_action"}


def stored(runtime: Runtime) -> set[bytes]:
    """Every key of both Redis databases, but the request metrics the API counts for any answer."""
    keys = set(runtime.redis.keys()) | {b"stream:" + key for key in runtime.stream_redis.keys()}
    return {key for key in keys if not key.startswith(b"hdxrq:metrics")}


def test_every_body_endpoint_is_covered(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    with_json = {
        path for path, methods in document["paths"].items() if "post" in methods and "requestBody" in methods["post"]
    }
    covered = {
        "/api/file-structure-check/dataset/{dataset_id}/resource/{resource_id}",
        "/processes/{process_id}/execution",
    }
    assert with_json <= {*bodies(), *covered}, with_json


@pytest.mark.parametrize("spelling", NON_FINITE)
def test_non_finite_numbers_are_refused_with_nothing_stored(
    client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str], spelling: str
) -> None:
    before = stored(runtime)
    answers = {}
    for path, body in bodies().items():
        text = json.dumps(body).replace("NaN", NON_FINITE[spelling])
        answer = client.post(path, data=text, headers={**admin_headers, "Content-Type": "application/json"})
        answers[path] = (answer.status_code, answer.get_json())
    for path, (status, body) in answers.items():
        if path in CONTRACT_200:
            assert status == 200 and (body.get("state") == "failure" or body.get("success") is False), (path, body)
        else:
            assert status == 400, (path, status, body)
    assert stored(runtime) - before == set()


def test_the_same_bodies_with_numbers_are_accepted(
    client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str]
) -> None:
    """The control: with 1.5 instead of NaN every endpoint takes its body (so the refusals above are the
    non-finite number's doing)."""
    before = stored(runtime)
    for path, body in bodies().items():
        text = json.dumps(body).replace("NaN", "1.5")
        answer = client.post(path, data=text, headers={**admin_headers, "Content-Type": "application/json"})
        assert answer.status_code in (200, 201), (path, answer.get_json())
        payload = answer.get_json()
        assert payload.get("state") != "failure" and payload.get("success") is not False, (path, payload)
    assert len(stored(runtime) - before) >= len(bodies())  # what the refusals must not leave: jobs, schedules
