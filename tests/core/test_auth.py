from __future__ import annotations

import pytest
from flask import Flask

from app.factory import create_app
from core.auth import admin_required, notification_endpoint
from core.runtime import Runtime
from core.settings import Settings


def app_with(settings_env: dict[str, str], **overrides: str) -> Flask:
    app = create_app(runtime=Runtime(Settings.from_env({**settings_env, **overrides})))

    @app.get("/test/admin")
    @admin_required
    def admin_view() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/test/notify")
    @notification_endpoint
    def notify_view() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer wrong-token", "Basic dGVzdDp0ZXN0", "test-admin-token-5d1e8b"],
)
def test_admin_endpoints_refuse_without_a_valid_bearer_token(settings_env: dict[str, str], header: str | None) -> None:
    client = app_with(settings_env).test_client()
    response = client.get("/test/admin", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "test-admin-token" not in body and response.get_json()["error_type"] == "unauthorized"


def test_any_configured_admin_token_is_accepted(settings_env: dict[str, str]) -> None:
    client = app_with(settings_env, HDXRQ_ADMIN_TOKENS="first-token,second-token").test_client()
    for token in ("first-token", "second-token"):
        assert client.get("/test/admin", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_without_configured_tokens_admin_endpoints_stay_closed(settings_env: dict[str, str]) -> None:
    client = app_with(settings_env, HDXRQ_ADMIN_TOKENS="").test_client()
    assert client.get("/test/admin", headers={"Authorization": "Bearer "}).status_code == 401


def test_notification_endpoints_are_open_by_default(settings_env: dict[str, str]) -> None:
    client = app_with(settings_env).test_client()
    assert client.get("/test/notify", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200


def test_allowed_networks_limit_notification_endpoints(settings_env: dict[str, str]) -> None:
    client = app_with(settings_env, HDXRQ_ALLOWED_NETWORKS="10.20.0.0/16,192.0.2.7").test_client()
    inside = client.get("/test/notify", environ_base={"REMOTE_ADDR": "10.20.3.4"})
    single = client.get("/test/notify", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    outside = client.get("/test/notify", environ_base={"REMOTE_ADDR": "10.21.0.1"})
    assert (inside.status_code, single.status_code) == (200, 200)
    assert outside.status_code == 403 and outside.get_json()["error_type"] == "forbidden"
