from __future__ import annotations

import gc

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.factory import create_prefork_app
from core.version import __version__
from tests.fakes import FakeCkan, Reply


def test_version_and_about(client: FlaskClient) -> None:
    for path in ("/version", "/about"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"version": __version__}


def test_run_checks_in_contract_shape(client: FlaskClient, fake_ckan: FakeCkan) -> None:
    result = client.get("/api/run-checks").get_json()["result"]
    names = {item["name"]: item for item in result}
    assert {"Redis connection", "Event stream Redis", "PostGIS connection", "CKAN API"} <= set(names)
    for item in result:
        assert set(item) == {"name", "type", "description", "result", "error_message", "subchecks"}
        assert item["result"] == "Passed", item
    assert fake_ckan.action_calls("status_show")


def test_run_checks_reports_a_failing_ckan(client: FlaskClient, fake_ckan: FakeCkan) -> None:
    fake_ckan.on_action("status_show", Reply(status=503, body={"success": False}), method="GET")
    result = {item["name"]: item for item in client.get("/api/run-checks").get_json()["result"]}
    assert result["CKAN API"]["result"] == "Failed"
    assert "503" in result["CKAN API"]["error_message"]
    assert result["Redis connection"]["result"] == "Passed"


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ok"


def test_errors_are_json_without_internals(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("connection string postgresql://gis:secret@db/gis")

    not_found = client.get("/no/such/path")
    assert not_found.status_code == 404
    assert not_found.get_json()["error_type"] == "not-found"

    wrong_method = client.delete("/version")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error_type"] == "method-not-allowed"

    crash = client.get("/boom")
    assert crash.status_code == 500
    assert crash.get_json() == {"error": "Internal server error", "error_type": "unknown"}
    assert b"secret" not in crash.data and b"Traceback" not in crash.data


def test_request_size_limit_admits_large_change_bodies_but_not_huge_ones(app: Flask, client: FlaskClient) -> None:
    @app.post("/echo-size")
    def echo_size() -> dict[str, int]:
        from flask import request

        return {"size": len(request.get_data())}

    five_mb = b"x" * (5 * 1024 * 1024)
    assert client.post("/echo-size", data=five_mb).get_json() == {"size": len(five_mb)}
    too_big = client.post("/echo-size", data=b"x" * (33 * 1024 * 1024))
    assert too_big.status_code == 413
    assert too_big.get_json()["error_type"] == "request-entity-too-large"


def test_unsupported_media_type_is_json(app: Flask, client: FlaskClient) -> None:
    @app.post("/needs-json")
    def needs_json() -> dict[str, object]:
        from flask import request

        return {"got": request.get_json()}

    response = client.post("/needs-json", data="a=b", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.get_json()["error_type"] == "unsupported-media-type"


def test_workers_json_is_public_and_says_state(client: FlaskClient) -> None:
    response = client.get("/monitor/workers.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["workers"] == [] and "state" in response.get_data(as_text=True)


def test_dashboard_requires_the_admin_token(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    refused = client.get("/monitor/")
    assert refused.status_code == 401
    assert refused.get_json()["error_type"] == "unauthorized"
    assert client.get("/monitor/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = client.get("/monitor/", headers=admin_headers)
    assert allowed.status_code == 200
    assert b"RQ" in allowed.data


def test_the_prefork_app_hides_what_it_built_from_the_garbage_collector(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What uWSGI's master builds before forking is frozen, so full collections in its processes skip it."""
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    gc.unfreeze()
    try:
        app = create_prefork_app()
        assert app.url_map.bind("localhost").match("/api/send-analytics", method="POST")
        assert gc.get_freeze_count() > 10_000  # the app, its modules' objects and everything else alive
    finally:
        gc.unfreeze()
