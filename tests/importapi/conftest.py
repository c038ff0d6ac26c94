"""Fixtures for the importapi tests: a local file host and generated geo files (real ogr2ogr)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.fakes import FakeCkan, FakeService, Reply

ACCEPTED = {
    "state": "processing",
    "message": "The processing of the geo-preview has started",
    "layer_id": "None",
    "error_type": "None",
    "error_class": "None",
}


def feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def polygon(x: float, y: float, size: float = 1.0) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def geojson(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def ogr2ogr(target: Path, source: Path, *args: str) -> Path:
    subprocess.run(["ogr2ogr", *args, str(target), str(source)], check=True, capture_output=True)
    return target


def zip_files(target: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return target


@pytest.fixture
def file_host() -> Iterator[FakeService]:
    """A file server; ``serve(name, bytes)`` publishes a file at ``/files/<name>``."""
    with FakeService("file-host") as host:
        yield host


@pytest.fixture
def serve(file_host: FakeService) -> Callable[..., str]:
    def publish(name: str, body: bytes | Reply | Callable[..., Reply], **reply: Any) -> str:
        answer = body if isinstance(body, Reply) or callable(body) else Reply(body=body, **reply)
        file_host.route("GET", f"/files/{name}", answer)
        return f"{file_host.url}/files/{name}"

    return publish


@pytest.fixture
def add_layer(client: FlaskClient, burst_worker: Callable[..., bool], fake_ckan: FakeCkan) -> Callable[..., dict]:
    """Call add-layer like CKAN, run geo_q to the end, return the callback's parsed shape_info."""

    def run(resource_id: str, url: str, dataset_id: str = "b0c3e8b2-3f3d-4a6e-9d1c-8f1e2a4c6d90") -> dict[str, Any]:
        answer = client.get(
            f"/api/add-layer/dataset/{dataset_id}/resource/{resource_id}",
            query_string={"resource_download_url": url, "url_type": "upload"},
        )
        assert answer.status_code == 200 and answer.get_json() == ACCEPTED
        burst_worker("geo_q")
        calls = fake_ckan.action_calls("hdx_resource_update_metadata")
        assert len(calls) == 1, calls
        body = calls[0].json()
        assert set(body) == {"id", "shape_info", "batch_mode"}
        assert body["id"] == resource_id and body["batch_mode"] == "KEEP_OLD"
        assert isinstance(body["shape_info"], str)
        return json.loads(body["shape_info"])

    return run


def columns(pg: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    return pg.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()


def table_facts(pg: psycopg.Connection, table: str) -> tuple[int, set[int], set[str]]:
    """(row count, SRIDs, geometry types) of a layer table."""
    rows = pg.execute(f'SELECT ST_SRID(wkb_geometry), ST_GeometryType(wkb_geometry) FROM public."{table}"').fetchall()
    return len(rows), {srid for srid, _ in rows}, {kind for _, kind in rows}


def fields(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"field_name": name, "data_type": data_type} for name, data_type in pairs]


def success(layer_id: str, bbox: str, layer_fields: list[dict[str, str]], message: str = "Import successful") -> dict:
    return {
        "state": "success",
        "message": message,
        "layer_id": layer_id,
        "error_type": "None",
        "error_class": "None",
        "bounding_box": bbox,
        "layer_fields": layer_fields,
    }


def failure(layer_id: str, code: str, error_class: str, message: str) -> dict:
    return {
        "state": "failure",
        "message": message,
        "layer_id": layer_id,
        "error_type": code,
        "error_class": error_class,
        "type": code,
    }
