"""Bad input and hostile servers: a clear failure callback with a code, no table, nothing left behind."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest

from app.settings import Settings
from tests.fakes import FakeCkan, FakeService, Reply

from .conftest import failure, feature, geojson, polygon

pytestmark = pytest.mark.usefixtures("runtime")


def new_resource() -> tuple[str, str]:
    resource_id = str(uuid.uuid4())
    return resource_id, "pre_" + resource_id.replace("-", "_")


def table_exists(pg, layer_id: str) -> bool:
    return pg.execute("SELECT to_regclass(%s) IS NOT NULL", (f'public."{layer_id}"',)).fetchone()[0]


def assert_nothing_left(settings: Settings) -> None:
    assert list(Path(settings.importapi.gis_tmp).iterdir()) == []


def test_not_a_geo_file(add_layer, serve, pg, settings) -> None:
    resource_id, layer_id = new_resource()
    shape_info = add_layer(resource_id, serve("report.pdf", b"%PDF-1.4 not geographic"))
    message = "report.pdf is not a GeoJSON, KML, KMZ, GeoPackage or zipped Shapefile"
    assert shape_info == failure(layer_id, "unsupported-format", "UnsupportedFormat", message)
    assert not table_exists(pg, layer_id)
    assert_nothing_left(settings)


def test_empty_zip(add_layer, serve, pg, settings) -> None:
    resource_id, layer_id = new_resource()
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    shape_info = add_layer(resource_id, serve("empty.zip", buffer.getvalue()))
    message = "The archive contains no Shapefile, GeoPackage, GeoJSON or KML file"
    assert shape_info == failure(layer_id, "no-layer-found", "NoLayerFound", message)
    assert not table_exists(pg, layer_id)
    assert_nothing_left(settings)


def test_zip_bomb(add_layer, serve, pg, settings) -> None:
    resource_id, layer_id = new_resource()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("layer.geojson", b" " * (20 * 1024 * 1024))
    shape_info = add_layer(resource_id, serve("bomb.zip", buffer.getvalue()))
    message = "layer.geojson declares a compression ratio above 200"  # refused before unpacking anything
    assert shape_info == failure(layer_id, "archive-too-large", "ArchiveTooLarge", message)
    assert_nothing_left(settings)


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    """Small limits so that the limit tests stay fast."""
    return {**settings_env, "MAX_FILE_SIZE_MB": "1", "HDXRQ_DOWNLOAD_READ_TIMEOUT_SEC": "0.5"}


def test_over_the_size_limit_while_streaming(add_layer, serve, pg, settings) -> None:
    resource_id, layer_id = new_resource()
    chunks = [b"x" * 65536 for _ in range(40)]  # 2.5 MB, chunked: no Content-Length to trust
    shape_info = add_layer(resource_id, serve("big.geojson", Reply(body=iter(chunks))))
    message = "The file is larger than 1 MB"
    assert shape_info == failure(layer_id, "file-too-large", "FileTooLarge", message)
    assert_nothing_left(settings)


def test_server_that_stalls(add_layer, serve, pg, settings, file_host: FakeService) -> None:
    resource_id, layer_id = new_resource()
    url = serve("slow.geojson", Reply(body=iter([b'{"type": "Feat', b"ureCollection"]), stall_after_chunks=1))
    shape_info = add_layer(resource_id, url)
    message = f"Download from {url} timed out"
    assert shape_info == failure(layer_id, "timeout", "ImportTimeout", message)
    assert_nothing_left(settings)


def test_private_address_is_refused(add_layer, pg) -> None:
    resource_id, layer_id = new_resource()
    shape_info = add_layer(resource_id, "http://169.254.169.254/latest/meta-data/iam.geojson")
    message = "Downloads from 169.254.169.254 are not allowed (a cloud metadata address)"
    assert shape_info == failure(layer_id, "download-refused", "DownloadRefused", message)


def test_redirect_to_private_address_is_refused(add_layer, serve, file_host: FakeService) -> None:
    resource_id, layer_id = new_resource()
    url = serve("moved.geojson", Reply(status=302, headers={"Location": "http://10.1.2.3/x.geojson"}))
    shape_info = add_layer(resource_id, url)
    message = "Downloads from 10.1.2.3 are not allowed (a private or reserved address)"
    assert shape_info == failure(layer_id, "download-refused", "DownloadRefused", message)
    assert len(file_host.calls) == 1


def test_token_only_to_the_ckan_host(add_layer, serve, file_host: FakeService, pg) -> None:
    resource_id, layer_id = new_resource()
    content = geojson(feature(polygon(1, 1), name="a"))
    port = file_host.url.rsplit(":", 1)[1]
    target = serve("real.geojson", content)
    redirect = serve(
        "go.geojson", Reply(status=302, headers={"Location": f"http://localhost:{port}/files/real.geojson"})
    )
    assert target.startswith("http://127.0.0.1")
    shape_info = add_layer(resource_id, redirect)
    assert shape_info["state"] == "success"
    first, second = file_host.calls
    assert first.header("authorization") is not None  # 127.0.0.1 is HDX_DOMAIN in the tests
    assert second.header("authorization") is None  # localhost is another host


def test_missing_url_is_refused_at_once(client) -> None:
    answer = client.get("/api/add-layer/dataset/d1/resource/r1", query_string={"url_type": "upload"})
    assert answer.status_code == 200
    assert answer.get_json() == {
        "state": "failure",
        "message": "The resource_download_url parameter is missing",
        "layer_id": "None",
        "error_type": "transformation-init-problem",
        "error_class": "MissingUrl",
    }


def test_redis_down_is_refused_at_once(settings_env, fake_ckan: FakeCkan) -> None:
    from app.factory import create_app

    app = create_app(Settings.from_env({**settings_env, "HDX_REDIS_PORT": "1"}))
    answer = app.test_client().get(
        "/api/add-layer/dataset/d1/resource/r1", query_string={"resource_download_url": "http://x/y.zip"}
    )
    body = answer.get_json()
    assert answer.status_code == 200 and body["state"] == "failure" and body["layer_id"] == "None"
    assert body["error_type"] == "transformation-init-problem" and body["error_class"] == "ConnectionError"
    assert body["message"] == "The request could not be handled (ConnectionError)"  # not redis-py's text, which
    # names the Redis host and port
