"""The in-process cache of expensive tiles."""

from __future__ import annotations

from pathlib import Path

import mapbox_vector_tile
import psycopg
from flask import Flask

from app.factory import create_app
from app.settings import Settings
from core.runtime import Runtime
from tests.tiles.samples import load_layer, polygon_features
from tiles.cache import TileCache


def test_lru_stays_within_its_size_and_keeps_recent_tiles() -> None:
    cache = TileCache(max_bytes=1000)
    for number in range(5):
        cache.put(f"etag-{number}", bytes(200))
    assert cache.get("etag-0") is not None  # used: now the most recent
    cache.put("etag-5", bytes(200))
    assert cache.size_bytes <= 1000
    assert cache.get("etag-1") is None and cache.get("etag-0") is not None and cache.get("etag-5") is not None


def test_a_tile_larger_than_a_quarter_of_the_cache_is_not_kept() -> None:
    cache = TileCache(max_bytes=1000)
    cache.put("big", bytes(251))
    assert cache.get("big") is None and cache.size_bytes == 0


def names(data: bytes, layer: str) -> set[str]:
    return {feature["properties"]["name"] for feature in mapbox_vector_tile.decode(data)[layer]["features"]}


def test_cached_tiles_are_served_until_the_layer_is_reimported(
    settings_env: dict[str, str], pg: psycopg.Connection, postgis_db: str, tmp_path: Path
) -> None:
    layer = "pre_cached_layer"
    load_layer(postgis_db, layer, polygon_features(), tmp_path)
    runtime = Runtime(Settings.from_env({**settings_env, "HDXRQ_TILES_MEMORY_CACHE_MIN_BUILD_MS": "0"}))
    app: Flask = create_app(runtime=runtime)
    try:
        client = app.test_client()
        url = f"/gis/{layer}/0/0/0.pbf?fields=name"
        assert "Zone 2" in names(client.get(url).data, layer)

        # An UPDATE keeps the table's generation: the tile comes from the cache, unchanged.
        pg.execute(f"UPDATE {layer} SET name = 'Renamed' WHERE ogc_fid = 2")
        assert "Zone 2" in names(client.get(url).data, layer)

        load_layer(postgis_db, layer, polygon_features()[:3], tmp_path)
        assert names(client.get(url).data, layer) == {'Zone 1 "quoted" é', "Zone 2", "Zone 3"}
    finally:
        runtime.close()
