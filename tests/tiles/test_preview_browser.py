"""The preview page in a real headless Chromium, served by ``./hdxrq.py serve`` (uWSGI) on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HDXRQ_PY, ROOT, free_port
from tests.tiles.browser import Chromium

pytestmark = pytest.mark.browser

SERVER_START_TIMEOUT_SEC = 60
SCREENSHOT_COPY_VARIABLE = "HDXRQ_TEST_PREVIEW_SCREENSHOT"
"""If set, the polygon test also writes its screenshot there (how docs/preview.png is made)."""

READY_JS = """
new Promise((resolve, reject) => {
  const started = Date.now();
  (function poll() {
    if (window.hdxPreview) {
      window.hdxPreview.whenReady.then(state => resolve({
        count: state.renderedFeatureCount,
        domState: document.getElementById("map").dataset.state,
        domCount: Number(document.getElementById("map").dataset.renderedFeatures),
        errors: state.errors,
      }));
    } else if (Date.now() - started > 30000) {
      reject(new Error("the preview script never started"));
    } else {
      setTimeout(poll, 50);
    }
  })();
})
"""


@pytest.fixture
def api_url(settings_env: dict[str, str]) -> Iterator[str]:
    """The real API (uWSGI via ./hdxrq.py serve) on a free port, with the test's environment."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), **settings_env, "HDXRQ_API_WORKERS": "1"}
    process = subprocess.Popen(
        [sys.executable, HDXRQ_PY, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SEC
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # polling the server's port until it listens
    raise RuntimeError("serve did not start listening")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    with Chromium(tmp_path / "chromium-profile") as chromium:
        yield chromium


def open_preview(browser: Chromium, url: str) -> dict[str, object]:
    browser.open(url)
    return browser.evaluate(READY_JS)  # type: ignore[no-any-return]


def test_preview_renders_every_polygon_and_shows_a_popup(
    api_url: str, polygon_layer: str, browser: Chromium, tmp_path: Path
) -> None:
    state = open_preview(browser, f"{api_url}/preview/{polygon_layer}")

    assert state["errors"] == [], browser.console_messages()
    assert state["count"] == 6 and state["domCount"] == 6 and state["domState"] == "ready"

    # Click inside square 5 ([11, 11.5] x [21, 21.5]): the popup lists its attributes.
    x, y = browser.evaluate(
        "(() => { const p = hdxPreview.map.project([11.25, 21.25]);"
        " const r = hdxPreview.map.getCanvas().getBoundingClientRect(); return [p.x + r.left, p.y + r.top]; })()"
    )
    browser.click(x, y)
    popup = browser.evaluate(
        "document.querySelector('.maplibregl-popup') && document.querySelector('.maplibregl-popup').innerText"
    )
    assert popup and "Zone 5" in popup and "5000" in popup

    screenshot = tmp_path / "preview.png"
    browser.evaluate("document.querySelector('.maplibregl-popup-close-button').click()")
    browser.screenshot(screenshot)
    assert screenshot.stat().st_size > 5000
    if os.environ.get(SCREENSHOT_COPY_VARIABLE):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_COPY_VARIABLE])


def test_preview_renders_points(api_url: str, point_layer: str, browser: Chromium) -> None:
    state = open_preview(browser, f"{api_url}/preview/{point_layer}")
    assert state["errors"] == []
    assert state["count"] == 3


def test_preview_assets_come_from_this_service(api_url: str, polygon_layer: str) -> None:
    page = httpx.get(f"{api_url}/preview/{polygon_layer}").text
    assert "/preview/maplibre/maplibre-gl.js" in page and "http" not in page.split("<body>")[1].split("</body>")[0]
    script = httpx.get(f"{api_url}/preview/maplibre/maplibre-gl.js")
    assert script.status_code == 200 and "maplibregl" in script.text[:5000].lower()
    assert httpx.get(f"{api_url}/preview/maplibre/package.json").status_code == 404
