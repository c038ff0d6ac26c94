"""With every secret configured, none appears where it must not: worker and API logs, anything stored in
Redis (every key of every database, rq's compressed job data included), the command lines ``ps`` shows while
ogr2ogr runs, and the answers of every endpoint, error answers included.

Secrets: the admin token, both CKAN keys, the PostGIS password (a private cluster with password
authentication), the Redis password (the API given ``HDXRQ_REDIS_URL``, the worker ``HDXRQ_REDIS_PASSWORD``),
the stream Redis password and the GA4 API secret. Long random values, so a match is never a coincidence.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from core.runtime import Runtime
from tests.analyticsapi.conftest import EXAMPLES as ANALYTICS_EXAMPLES
from tests.fakes import FakeCkan, FakeGa4, FakeMixpanel, FakeService, Reply, json_reply
from tests.redisdump import everything_in

from .conftest import PostgresServer, Proc, RedisServer, serve_api, wait_until
from .events import change_request
from .test_worker_kill import many_points

SECRETS = {
    "HDXRQ_ADMIN_TOKENS": f"admin-{secrets.token_hex(12)}",
    "HDXRQ_NOTIFIER_TOKENS": f"notifier-{secrets.token_hex(12)}",
    "HDX_GIS_API_KEY": f"gis-key-{secrets.token_hex(12)}",
    "HDX_FSCHECK_API_KEY": f"fs-key-{secrets.token_hex(12)}",
    "HDX_GISDB_PASS": f"db-pass-{secrets.token_hex(12)}",
    "GA4_API_SECRET": f"ga4-secret-{secrets.token_hex(12)}",
}
REDIS_PASSWORD = f"redis-pass-{secrets.token_hex(12)}"
DB, USER = "gis_secrets", "hdxrq_secrets"
ALL_SECRETS = [*SECRETS.values(), REDIS_PASSWORD]


@pytest.fixture
def redis_server(private_redis: Callable[..., RedisServer]) -> RedisServer:
    return private_redis(password=REDIS_PASSWORD)


@pytest.fixture
def postgres(private_postgres: Callable[[], PostgresServer]) -> PostgresServer:
    server = private_postgres()
    server.create_gis_database(DB, USER, SECRETS["HDX_GISDB_PASS"])
    return server


@pytest.fixture
def outside() -> Iterator[dict[str, FakeService]]:
    with FakeMixpanel() as mixpanel, FakeGa4() as ga4, FakeService("hxl-proxy") as proxy, FakeService("files") as files:
        proxy.route("GET", "/api/source-info", json_reply({"url_or_filename": "x.csv", "format": "CSV", "sheets": []}))
        yield {"mixpanel": mixpanel, "ga4": ga4, "proxy": proxy, "files": files}


@pytest.fixture
def settings_env(
    settings_env: dict[str, str], redis_server: RedisServer, postgres: PostgresServer, outside: dict
) -> dict[str, str]:
    port = str(redis_server.port)
    return {
        **settings_env,
        **SECRETS,
        "HDX_REDIS_PORT": port,
        "HDX_REDIS_GISDB": "1",
        "HDXRQ_REDIS_PASSWORD": REDIS_PASSWORD,
        "REDIS_STREAM_PORT": port,
        "REDIS_STREAM_DB": "2",
        "HDXRQ_STREAM_REDIS_PASSWORD": REDIS_PASSWORD,
        "HDX_GISDB_PORT": str(postgres.port),
        "HDX_GISDB_DB": DB,
        "HDX_GISDB_USER": USER,
        "MIXPANEL_API_URL": outside["mixpanel"].url,
        "GA4_ENDPOINT": outside["ga4"].endpoint,
        "GA4_MEASUREMENT_ID": "G-TEST",
        "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": "hdx_test_action",
        "HDXRQ_LOG_LEVEL": "DEBUG",
    }


def shapefile_zip(directory: Path, points: int) -> bytes:
    """A zipped Shapefile (loaded by ogr2ogr, unlike GeoJSON which has a fast path of its own)."""
    source = directory / "points.geojson"
    source.write_bytes(many_points(points))
    target = directory / "shp"
    subprocess.run(["ogr2ogr", "-f", "ESRI Shapefile", str(target), str(source)], check=True, capture_output=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in target.iterdir():
            archive.write(member, member.name)
    return buffer.getvalue()


def test_no_secret_in_logs_redis_command_lines_or_answers(
    spawn: Callable[..., Proc],
    runtime: Runtime,
    fake_ckan: FakeCkan,
    outside: dict[str, FakeService],
    redis_server: RedisServer,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/1"
    api, base = serve_api(spawn, {"HDXRQ_REDIS_URL": redis_url, "HDXRQ_REDIS_PASSWORD": ""})
    worker = spawn("worker", "--with-scheduler")
    admin = {"Authorization": f"Bearer {SECRETS['HDXRQ_ADMIN_TOKENS']}"}
    fake_ckan.on_action("hdx_test_action", json_reply({"success": True, "result": {}}))
    fake_ckan.on_action("hdx_resource_id_list", json_reply({"success": False, "error": {"message": "x"}}), "GET")
    files = outside["files"]
    files.route("GET", "/files/points.zip", Reply(body=shapefile_zip(tmp_path, 60_000)))
    answers: list[str] = []

    with httpx.Client(base_url=base, timeout=30) as http:
        resource_id = str(uuid.uuid4())
        url = f"{files.url}/files/points.zip"
        answers.append(_get(http, f"/api/add-layer/dataset/d/resource/{resource_id}?resource_download_url={url}"))
        command_lines = _command_lines_while_ogr2ogr_runs(runtime, f"geopreview-{resource_id}")
        _post_everything(http, outside, admin, answers)
        fake_ckan.wait_for_action("hdx_resource_update_metadata", 1, timeout=120)
        fake_ckan.wait_for_action("hdx_fs_check_resource_revise", 1, timeout=60)
        outside["ga4"].wait_for_calls(FakeGa4.PATH, 1, timeout=60)
        answers += _every_read_endpoint(http, admin, resource_id)

    config = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / "hdxrq.py"), "config"],
        env={"PATH": os.environ.get("PATH", ""), **settings_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    places = {
        "command lines while ogr2ogr ran": command_lines,
        "API log": api.output(),
        "worker log": worker.output(),
        "answers": "\n".join(answers),
        "./hdxrq.py config": config.stdout + config.stderr,
        "Redis": _everything_in_redis(redis_server),
    }
    assert "ogr2ogr" in command_lines  # captured at the right moment
    shape_info = json.loads(fake_ckan.action_calls("hdx_resource_update_metadata")[0].json()["shape_info"])
    assert shape_info["state"] == "success"  # the PostGIS password worked, through ogr2ogr's environment
    assert f"geopreview-{resource_id}" in places["Redis"] and "job=" in places["worker log"]  # real material
    assert SECRETS["GA4_API_SECRET"] in outside["ga4"].calls[0].query["api_secret"]  # it was configured and used
    leaks = [(place, name) for place, text in places.items() for name in _secrets_in(text)]
    assert leaks == []


def _get(http: httpx.Client, path: str, **kwargs) -> str:
    answer = http.get(path, **kwargs)
    return f"{answer.status_code} {answer.headers} {answer.text}"


def _post(http: httpx.Client, path: str, **kwargs) -> str:
    answer = http.post(path, **kwargs)
    return f"{answer.status_code} {answer.headers} {answer.text}"


def _command_lines_while_ogr2ogr_runs(runtime: Runtime, job_id: str) -> str:
    """``ps`` output captured while the import's ogr2ogr child runs."""

    def ogr2ogr_running() -> bool:
        listing = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True, text=True).stdout
        return any("ogr2ogr" in line and "PG:" in line for line in listing.splitlines())

    wait_until(ogr2ogr_running, 120, "ogr2ogr to run", interval=0.02)
    listing = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True, text=True).stdout
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            listing += "\n" + cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return listing


def _post_everything(http: httpx.Client, outside: dict, admin: dict[str, str], answers: list[str]) -> None:
    analytics = json.loads((ANALYTICS_EXAMPLES / "analytics-01-resource-download.json").read_text())["payload"]
    answers.append(_post(http, "/api/send-analytics", json={**analytics, "send_ga": True}))
    answers.append(_post(http, "/api/send-analytics", json={"event_name": 5}))
    answers.append(_post(http, "/api/create-change-events", json=change_request(1)))
    answers.append(_post(http, "/api/create-change-events", content=b"{not json"))
    fs_body = {"hxl_proxy_source_info_url": f"{outside['proxy'].url}/api/source-info", "fs_check_info": "[]"}
    answers.append(_post(http, "/api/file-structure-check/dataset/d/resource/r", json=fs_body))
    answers.append(_post(http, "/api/scheduler/add_job", json={"action": "hdx_test_action"}, headers=admin))
    secret_in_params = {"action": "hdx_test_action", "api_params": {"key": SECRETS["HDX_GIS_API_KEY"]}}
    answers.append(_post(http, "/api/scheduler/add_job", json=secret_in_params, headers=admin))
    answers.append(_post(http, "/processes/geopreview-import/execution", json={"inputs": {"url": "ftp://x"}}))
    answers.append(_get(http, "/api/add-layer/dataset/d/resource/r"))  # missing URL


def _every_read_endpoint(http: httpx.Client, admin: dict[str, str], resource_id: str) -> list[str]:
    paths = ["/api/run-checks", "/readyz", "/healthz", "/metrics", "/monitor/workers.json", "/openapi.json"]
    paths += ["/jobs", f"/jobs/geopreview-{resource_id}", f"/jobs/geopreview-{resource_id}/log", "/processes"]
    paths += ["/api/delete-layers", "/api/scheduler/list_jobs", "/monitor/", "/gis/test"]
    found = []
    for path in paths:
        found.append(_get(http, path))
        found.append(_get(http, path, headers=admin))
    found.append(_get(http, "/api/delete-layers/dry-run/false", headers={"Authorization": "Bearer wrong"}))
    found.append(_get(http, "/api/delete-layers/dry-run/false", headers=admin))
    return found


def _everything_in_redis(server: RedisServer) -> str:
    """Every value of every key of every database, zlib-compressed values (rq's job data) decompressed."""
    parts = []
    for db in range(16):
        client = server.client(db)
        parts.append(everything_in(client))
        client.close()
    return "\n".join(parts)


def _secrets_in(text: str) -> list[str]:
    return [name for name, value in {**SECRETS, "redis password": REDIS_PASSWORD}.items() if value in text]
