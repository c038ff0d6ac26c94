"""File-structure check (CONTRACTS.md §2.6) against a fake HXL proxy and the fake CKAN."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.settings import Settings
from core.connections import queue
from core.runtime import Runtime
from tests.conftest import TEST_FSCHECK_API_KEY
from tests.eventsapi.helpers import EVENT_TIME
from tests.fakes import FakeCkan, FakeService, Reply, json_reply

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
SOURCE_INFO = "/api/source-info"
ACTION = "hdx_fs_check_resource_revise"
DATASET, RESOURCE = "ds-1", "res-1"
PATH = f"/api/file-structure-check/dataset/{DATASET}/resource/{RESOURCE}"

A = {"name": "Admin1", "is_hidden": False, "nrows": 34, "ncols": 14, "header_hash": "h1", "hashtag_hash": "t1"}
B = {"name": "Admin0", "is_hidden": False, "nrows": 2, "ncols": 12, "header_hash": "h0", "hashtag_hash": None}
PREVIOUS = {"url_or_filename": "f.xlsx", "format": "XLSX", "sheets": [A, B]}
CURRENT = {"url_or_filename": "f.xlsx", "format": "XLSX", "sheets": [A | {"nrows": 40}, {"name": "Admin2"}]}
HISTORY = json.dumps(
    [
        {"state": "success", "hxl_proxy_response": {"sheets": [{"name": "Old"}]}},
        {"state": "processing"},
        {"state": "success", "hxl_proxy_response": PREVIOUS},
        {"state": "error", "message": "x"},
    ]
)


@pytest.fixture
def proxy() -> Iterator[FakeService]:
    with FakeService("fake-hxl-proxy") as service:
        yield service


def request_check(client: FlaskClient, proxy: FakeService, history: str = HISTORY) -> None:
    url = f"{proxy.url}{SOURCE_INFO}?url=https://data.example.org/f.xlsx"
    response = client.post(PATH, json={"hxl_proxy_source_info_url": url, "fs_check_info": history})
    assert response.status_code == 200 and response.get_json() == {"success": True}


def the_callback_value(fake_ckan: FakeCkan) -> dict:
    [call] = fake_ckan.action_calls(ACTION)
    body = call.json()
    assert set(body) == {"id", "package_id", "key", "value"}
    assert (body["id"], body["package_id"], body["key"]) == (RESOURCE, DATASET, "fs_check_info")
    assert call.header("Authorization") == TEST_FSCHECK_API_KEY
    assert call.header("User-Agent") == "HDXINTERNAL_GEOPREVIEW"
    assert call.header("Content-Type") == "application/json"
    assert isinstance(body["value"], dict)  # an object here, not a JSON string
    assert EVENT_TIME.match(body["value"]["timestamp"])
    return body["value"]


def test_sheets_are_diffed_against_the_last_success_and_sent_to_ckan(
    client: FlaskClient, runtime: Runtime, proxy: FakeService, fake_ckan: FakeCkan, worker_process: RunCommand
) -> None:
    proxy.route("GET", SOURCE_INFO, json_reply(CURRENT))
    request_check(client, proxy)

    done = worker_process("worker", "--burst", "fs_check_q")

    assert done.returncode == 0, done.stderr
    assert proxy.calls_to(SOURCE_INFO)[0].query["url"] == ["https://data.example.org/f.xlsx"]
    value = the_callback_value(fake_ckan)
    assert value["state"] == "success" and value["message"] == "File structure check completed"
    assert value["hxl_proxy_response"] == CURRENT
    assert value["sheet_changes"] == [
        {"name": "Admin2", "event_type": "spreadsheet-sheet-created", "changed_fields": ""},
        {"name": "Admin0", "event_type": "spreadsheet-sheet-deleted", "changed_fields": ""},
        {
            "name": "Admin1",
            "event_type": "spreadsheet-sheet-changed",
            "changed_fields": [
                {"field": "nrows", "new_value": 40, "new_display_value": 40, "old_value": 34, "old_display_value": 34}
            ],
        },
    ]
    assert TEST_FSCHECK_API_KEY not in done.stderr


def test_first_check_has_no_sheet_changes(
    client: FlaskClient, proxy: FakeService, fake_ckan: FakeCkan, burst_worker: Callable[..., bool]
) -> None:
    proxy.route("GET", SOURCE_INFO, json_reply(CURRENT))
    request_check(client, proxy, history="")
    assert burst_worker("fs_check_q")
    value = the_callback_value(fake_ckan)
    assert value["state"] == "success" and value["sheet_changes"] == []


@pytest.mark.parametrize(
    ("reply", "message_part"),
    [
        (Reply(status=200, body=b"<html><body>Oops</body></html>", headers={"Content-Type": "text/html"}), "text/html"),
        (Reply(status=500, body={"error": "boom"}), "HTTP 500"),
        (Reply(status=200, body=[1, 2]), "not an object"),
        (Reply(drop=True), "could not be reached"),
    ],
)
def test_proxy_failures_send_an_error_item(
    reply: Reply,
    message_part: str,
    client: FlaskClient,
    proxy: FakeService,
    fake_ckan: FakeCkan,
    burst_worker: Callable[..., bool],
) -> None:
    proxy.route("GET", SOURCE_INFO, reply)
    request_check(client, proxy)
    assert burst_worker("fs_check_q")
    value = the_callback_value(fake_ckan)
    assert value["state"] == "error"
    assert message_part in value["message"]


def test_a_stalled_proxy_times_out_into_an_error_item(
    settings_env: dict[str, str], proxy: FakeService, fake_ckan: FakeCkan, redis_dbs: tuple[int, int]
) -> None:
    from app.factory import create_app
    from core import runtime as runtime_module

    rt = runtime_module.install(Runtime(Settings.from_env({**settings_env, "TIMEOUT_SEC": "1"})))
    try:
        app: Flask = create_app(runtime=rt)
        proxy.route("GET", SOURCE_INFO, Reply(stall=True))
        request_check(app.test_client(), proxy)
        from rq import SimpleWorker

        from core.connections import SERIALIZER

        SimpleWorker([queue("fs_check_q", rt.redis)], connection=rt.redis, serializer=SERIALIZER).work(burst=True)
        value = the_callback_value(fake_ckan)
        assert value["state"] == "error" and "did not answer within 1 s" in value["message"]
    finally:
        proxy.release()
        rt.close()
        runtime_module._current = None


def test_ckan_down_the_callback_is_retried_until_it_lands(
    client: FlaskClient, runtime: Runtime, proxy: FakeService, fake_ckan: FakeCkan, burst_worker: Callable[..., bool]
) -> None:
    proxy.route("GET", SOURCE_INFO, json_reply(CURRENT))
    fake_ckan.script_action(ACTION, Reply(status=503, body={"error": "maintenance"}))
    request_check(client, proxy)

    assert burst_worker("fs_check_q")

    calls = fake_ckan.action_calls(ACTION)
    assert len(calls) == 2  # the inline attempt got 503; the queued callback job delivered it
    assert calls[0].json() == calls[1].json()
    assert len(proxy.calls_to(SOURCE_INFO)) == 1  # the proxy is not asked again


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"fs_check_info": "[]"},
        {"hxl_proxy_source_info_url": "ftp://x/y", "fs_check_info": "[]"},
        {"hxl_proxy_source_info_url": "http://x/y", "fs_check_info": [1]},
    ],
)
def test_unusable_fs_check_bodies_are_refused_with_a_message(
    body: dict | None, client: FlaskClient, runtime: Runtime
) -> None:
    response = client.post(PATH, json=body) if body is not None else client.post(PATH, data=b"nope")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["success"] is False and answer["message"]
    assert queue("fs_check_q", runtime.redis).count == 0
