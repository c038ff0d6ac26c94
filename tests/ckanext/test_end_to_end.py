"""A real CKAN 2.12 with ckanext-hdxrq beside a running hdxrq (API and worker), end to end.

CKAN (its own virtualenv, database, Redis database, the Solr stand-in) is served by ``ckan run -r -D``;
hdxrq by ``./hdxrq.py run``. Through CKAN's action API the test creates a dataset with a GeoJSON resource,
then checks the layer in PostGIS, the ``shape_info`` CKAN received back, the map view in headless Chromium
inside CKAN's resource page, the change events on the stream, that deleting the resource drops its layer,
and that a save still succeeds once hdxrq is stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis import Redis

from tests.ckanext.ckansite import CkanSite, FakeSolr, ckan_database, write_ini
from tests.conftest import HDXRQ_PY, REDIS_HOST, REDIS_PORT, ROOT, free_port
from tests.fakes import FakeService, Reply
from tests.tiles.browser import Chromium
from tests.tiles.samples import polygon_features
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOT_COPY_VARIABLE = "HDXRQ_TEST_CKAN_VIEW_SCREENSHOT"
"""If set, the test also writes its screenshot of the resource page there (how docs/ckanext-view.png is made)."""
SCREENSHOT_SIZE = {"width": 1200, "height": 960, "deviceScaleFactor": 1, "mobile": False}
IMPORT_TIMEOUT_SEC = 120

VIEW_READY_JS = """
new Promise((resolve, reject) => {
  const started = Date.now();
  (function poll() {
    const frame = document.querySelector("iframe[data-module='data-viewer']");
    const view = frame && frame.contentWindow;
    if (view && view.hdxPreview) {
      view.hdxPreview.whenReady.then(state => resolve({
        count: state.renderedFeatureCount,
        errors: state.errors,
        tiles: state.map.getStyle().sources.layer.tiles,
        scripts: Array.from(view.document.scripts).map(script => script.src).filter(Boolean),
      }));
    } else if (Date.now() - started > 60000) {
      reject(new Error("the map view never started"));
    } else {
      setTimeout(poll, 100);
    }
  })();
})
"""


@pytest.fixture
def file_host() -> Iterator[FakeService]:
    """Where the dataset's GeoJSON lives (a link resource, downloaded by hdxrq's worker)."""
    collection = {"type": "FeatureCollection", "features": polygon_features()}
    with FakeService("file-host") as host:
        host.route("GET", "/zones.geojson", Reply(body=json.dumps(collection).encode()))
        yield host


class Hdxrq:
    """``./hdxrq.py run``: the API and one worker (all queues), as a process group the test can stop."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, HDXRQ_PY, "run", "--port", str(port), "--workers", "1"],
                env={"PATH": os.environ.get("PATH", ""), **env},
                cwd=ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def wait_until_serving(self) -> None:
        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"hdxrq exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=60, what="hdxrq to serve")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


@pytest.fixture
def site(
    tmp_path: Path,
    fake_solr: FakeSolr,
    ckan_redis_db: int,
    settings_env: dict[str, str],
) -> Iterator[tuple[CkanSite, Hdxrq]]:
    """CKAN with ``hdxrq hdxrq_view`` and hdxrq calling it back, both running."""
    ckan_port, hdxrq_port = free_port(), free_port()
    with ckan_database() as database:
        ini = write_ini(
            tmp_path / "ckan.ini",
            database=database,
            site_url=f"http://127.0.0.1:{ckan_port}",
            solr_url=fake_solr.solr_url,
            redis_db=ckan_redis_db,
            **{
                "ckan.plugins": "hdxrq hdxrq_view",
                "ckan.views.default_views": "hdxrq_view",
                "ckanext.hdxrq.url": f"http://127.0.0.1:{hdxrq_port}",
                "ckanext.hdxrq.token": NOTIFIER_TOKEN,
            },
        )
        ckan = CkanSite(ini, ckan_port)
        token = ckan.initialise()
        hdxrq_env = {
            **settings_env,
            "CKAN_API_BASE_URL": f"{ckan.url}/api/action",
            "HDX_GIS_API_KEY": token,
            "HDX_FSCHECK_API_KEY": token,
            "HDXRQ_API_WORKERS": "1",
            # CKAN calls from 127.0.0.1, outside these networks: only its notifier token lets it in
            "HDXRQ_ALLOWED_NETWORKS": "192.0.2.0/24",
            "HDXRQ_NOTIFIER_TOKENS": NOTIFIER_TOKEN,
        }
        hdxrq = Hdxrq(hdxrq_env, hdxrq_port, tmp_path / "hdxrq.log")
        try:
            ckan.start()
            hdxrq.wait_until_serving()
            yield ckan, hdxrq
        finally:
            hdxrq.stop()
            ckan.stop()


NOTIFIER_TOKEN = "notifier-" + secrets.token_hex(12)
"""CKAN's token for hdxrq: its notifications only, none of hdxrq's admin operations."""


def layer_id(resource_id: str) -> str:
    return "pre_" + "".join(c if c.isalnum() else "_" for c in resource_id)


def latest_shape_info(ckan: CkanSite, resource_id: str) -> dict[str, Any] | None:
    value = ckan.action("resource_show", id=resource_id).get("shape_info")
    history = json.loads(value) if value else []
    return history[-1] if history else None


def finished_shape_info(ckan: CkanSite, resource_id: str) -> dict[str, Any] | None:
    latest = latest_shape_info(ckan, resource_id)
    return latest if latest and latest["state"] != "processing" else None


def stream_events(stream: Redis, stream_name: str, dataset_id: str) -> list[dict[str, Any]]:
    events = [json.loads(fields[b"body"]) for _, fields in stream.xrange(stream_name)]
    return [event for event in events if event["dataset_id"] == dataset_id]


def test_ckan_with_hdxrq_end_to_end(
    site: tuple[CkanSite, Hdxrq],
    file_host: FakeService,
    settings_env: dict[str, str],
    pg: psycopg.Connection,
    tmp_path: Path,
) -> None:
    ckan, hdxrq = site
    features = polygon_features()

    # 1. A dataset with a GeoJSON resource (and a CSV one) through CKAN's action API.
    ckan.action("organization_create", name="test-org", title="Test organisation")
    dataset = ckan.action(
        "package_create",
        name="admin-zones",
        title="Administrative zones",
        owner_org="test-org",
        resources=[
            {"name": "Zones", "url": f"{file_host.url}/zones.geojson", "format": "GeoJSON"},
            {"name": "Table", "url": f"{file_host.url}/zones.csv", "format": "CSV"},
        ],
    )
    geo = dataset["resources"][0]

    # 2. hdxrq imported it into PostGIS and told CKAN: the resource carries the shape_info.
    info = wait_until(
        lambda: finished_shape_info(ckan, geo["id"]), timeout=IMPORT_TIMEOUT_SEC, what="the geopreview result"
    )
    assert info["state"] == "success", info
    assert info["layer_id"] == layer_id(geo["id"]) and info["bounding_box"] == "BOX(10 20,12.5 21.5)"
    assert {"field_name": "name", "data_type": "character varying"} in info["layer_fields"]
    assert pg.execute(f'SELECT count(*) FROM public."{info["layer_id"]}"').fetchone() == (len(features),)
    assert latest_shape_info(ckan, dataset["resources"][1]["id"]) is None  # the CSV is not imported

    # 3. The map view (created by default for the GeoJSON resource) renders hdxrq's tiles in CKAN's page.
    views = ckan.action("resource_view_list", id=geo["id"])
    assert [view["view_type"] for view in views] == ["hdxrq_view"]
    with Chromium(tmp_path / "chromium-profile") as browser:
        browser.open(f"{ckan.url}/dataset/admin-zones/resource/{geo['id']}")
        state = browser.evaluate(VIEW_READY_JS)
        assert state["errors"] == [], browser.console_messages()
        assert state["count"] == len(features)
        assert [url.split("?")[0] for url in state["tiles"]] == [
            f"{hdxrq.url}/gis/{info['layer_id']}/{{z}}/{{x}}/{{y}}.pbf"
        ]
        assert f"{hdxrq.url}/preview/maplibre/maplibre-gl.js" in state["scripts"]
        screenshot = tmp_path / "ckan-view.png"
        browser.send("Emulation.setDeviceMetricsOverride", SCREENSHOT_SIZE)  # the whole map below the header
        browser.screenshot(screenshot)
        assert screenshot.stat().st_size > 5000
        if os.environ.get(SCREENSHOT_COPY_VARIABLE):
            shutil.copyfile(screenshot, os.environ[SCREENSHOT_COPY_VARIABLE])

    # 4. An update: the events of the create and of the update are on the stream.
    ckan.action("package_patch", id="admin-zones", notes="Zones of the 2024 census")
    stream = Redis(host=REDIS_HOST, port=REDIS_PORT, db=int(settings_env["REDIS_STREAM_DB"]))
    stream_name = "hdx_event_stream"

    def events_so_far() -> list[dict[str, Any]]:
        found = stream_events(stream, stream_name, dataset["id"])
        return found if any(e["event_type"] == "dataset-metadata-changed" for e in found) else []

    events = wait_until(events_so_far, timeout=60, what="the update's events on the stream")
    assert [e["event_type"] for e in events] == [
        "dataset-created",
        "resource-created",
        "resource-created",
        "dataset-metadata-changed",
    ]
    assert all(e["initiator_user_name"] == "ckanadmin" and e["org_name"] == "test-org" for e in events)
    changed = events[-1]["changed_fields"]
    assert [item["field"] for item in changed] == ["notes"] and changed[0]["new_value"] == "Zones of the 2024 census"

    # 5. Deleting the resource drops its layer, so its tiles are no longer served.
    ckan.action("resource_delete", id=geo["id"])
    table = f'public."{info["layer_id"]}"'
    wait_until(
        lambda: pg.execute("SELECT to_regclass(%s) IS NULL", (table,)).fetchone() == (True,),
        timeout=60,
        what="the deleted resource's layer to be dropped",
    )

    # 6. hdxrq stopped: the save still succeeds; the failure is logged and counted.
    hdxrq.stop()
    before = ckan.action("hdxrq_status_show")["failures"]
    assert before == {}
    saved = ckan.action("package_patch", id="admin-zones", title="Administrative zones (2024)")
    assert saved["title"] == "Administrative zones (2024)"
    assert ckan.action("package_show", id="admin-zones")["title"] == "Administrative zones (2024)"
    after = ckan.action("hdxrq_status_show")
    assert after["failures"] == {"create-change-events": 1}
    assert after["pending"] == 1  # parked in CKAN's Redis, sent again once hdxrq answers
    assert "hdxrq: create-change-events for dataset" in ckan.log_tail(20000)
    assert ckan.token and ckan.token not in ckan.log_path.read_text()
    assert NOTIFIER_TOKEN not in ckan.log_path.read_text()
