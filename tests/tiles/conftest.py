"""Layers shared by the tiles tests: loaded once per module into the session's PostGIS database."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.tiles.samples import load_layer, point_features, polygon_features

POLYGONS = "pre_0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0"
POINTS = "pre_11111111_2222_3333_4444_555555555555"


@pytest.fixture(scope="module")
def layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layers")


@pytest.fixture(scope="module")
def polygon_layer(postgis_db: str, layer_dir: Path) -> str:
    load_layer(postgis_db, POLYGONS, polygon_features(), layer_dir)
    return POLYGONS


@pytest.fixture(scope="module")
def point_layer(postgis_db: str, layer_dir: Path) -> str:
    load_layer(postgis_db, POINTS, point_features(), layer_dir)
    return POINTS


@pytest.fixture
def fake_ckan() -> SimpleNamespace:
    """Tiles never call CKAN: an address instead of the recording server (whose shutdown takes 0.5 s)."""
    return SimpleNamespace(base_url="http://127.0.0.1:9/api/action")
