"""Bounded queues: beyond the limit, CKAN's endpoints refuse in their own contract shapes."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.factory import create_app
from app.settings import Settings


def limited_client(settings_env: dict[str, str]) -> FlaskClient:
    limits = "event_q=1,geo_q=1,fs_check_q=1"
    return create_app(Settings.from_env({**settings_env, "HDXRQ_MAX_QUEUED_JOBS": limits})).test_client()


def test_create_change_events_beyond_the_limit(settings_env: dict[str, str]) -> None:
    client = limited_client(settings_env)
    body = {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": {"type": "dataset", "name": "n"}}
    assert client.post("/api/create-change-events", json=body).get_json() == {"state": "success"}

    refused = client.post("/api/create-change-events", json=body)

    assert refused.status_code == 200
    assert refused.get_json()["state"] == "failure"
    assert "waiting jobs" in refused.get_json()["message"]


def test_add_layer_beyond_the_limit(settings_env: dict[str, str]) -> None:
    client = limited_client(settings_env)
    url = "/api/add-layer/dataset/d1/resource/{}?resource_download_url=http%3A%2F%2F127.0.0.1%2Fa.geojson"
    assert client.get(url.format("r-1")).get_json()["state"] == "processing"

    refused = client.get(url.format("r-2")).get_json()

    assert refused["state"] == "failure"
    assert (refused["error_type"], refused["error_class"]) == ("transformation-init-problem", "QueueFull")
    assert refused["layer_id"] == "None"


def test_file_structure_check_beyond_the_limit(settings_env: dict[str, str]) -> None:
    client = limited_client(settings_env)
    url = "/api/file-structure-check/dataset/d1/resource/r1"
    body = {"hxl_proxy_source_info_url": "http://127.0.0.1:9/info", "fs_check_info": "[]"}
    assert client.post(url, json=body).get_json() == {"success": True}

    refused = client.post(url, json=body).get_json()

    assert refused["success"] is False and refused["error_type"] == "queue-full"
