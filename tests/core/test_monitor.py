"""The dashboard under ``MONITOR_URL``: the admin token as a Bearer token or as a Basic password, a Basic
challenge so that a browser asks for it, and ``workers.json`` open to CKAN's checker."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app.factory import create_app
from app.settings import Settings
from core.connections import queue
from core.runtime import Runtime
from tests.conftest import TEST_ADMIN_TOKEN
from tests.tiles.browser import Chromium
from tests.tiles.test_preview_browser import api_url  # noqa: F401 (the served API, as the preview tests use it)
from tests.waiting import wait_until


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_token_as_basic_password_opens_the_dashboard_whatever_the_user_name(client: FlaskClient) -> None:
    for user in ("admin", "someone else", ""):
        response = client.get("/monitor/", headers=basic(user, TEST_ADMIN_TOKEN))
        assert response.status_code == 200, user
        assert b"RQ" in response.data


def test_without_the_token_the_browser_is_asked_for_it_and_shown_nothing(client: FlaskClient) -> None:
    for headers in ({}, basic("admin", "wrong"), basic(TEST_ADMIN_TOKEN, ""), {"Authorization": "Bearer wrong"}):
        refused = client.get("/monitor/", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Basic realm="hdxrq monitor"')
        assert refused.get_json()["error_type"] == "unauthorized"
        assert b"RQ" not in refused.data and b"queue" not in refused.data.lower()
    assert client.get("/monitor/0/data/queues.json").status_code == 401


def test_no_password_opens_it_when_no_token_is_configured(settings_env: dict[str, str]) -> None:
    del settings_env["HDXRQ_ADMIN_TOKENS"]
    runtime = Runtime(Settings.from_env(settings_env))
    try:
        client = create_app(runtime=runtime).test_client()
        for password in ("", " ", TEST_ADMIN_TOKEN):
            assert client.get("/monitor/", headers=basic("admin", password)).status_code == 401
    finally:
        runtime.close()


def test_workers_json_stays_open_for_ckans_checker(client: FlaskClient) -> None:
    response = client.get("/monitor/workers.json")
    assert response.status_code == 200 and "state" in response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.browser
def test_chromium_opens_the_dashboard_with_the_token_as_password(
    api_url: str,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    queue("event_q", runtime.redis).enqueue("tests.jobs.record", "key", "value")
    host = api_url.removeprefix("http://")
    with Chromium(tmp_path / "refused") as browser:
        browser.open(f"{api_url}/monitor/")  # headless: nobody types into the password prompt
        assert not browser.evaluate("document.title").startswith("RQ")
        assert "event_q" not in browser.evaluate("document.body.innerText")
    with Chromium(tmp_path / "allowed") as browser:
        browser.open(f"http://admin:{TEST_ADMIN_TOKEN}@{host}/monitor/")
        assert browser.evaluate("document.title").startswith("RQ")
        # The queue list arrives by XHR under the same realm: the browser sent the password again by itself.
        wait_until(lambda: "event_q" in browser.evaluate("document.body.innerText"), what="the queue list")
