"""Test layers for the tiles slice, loaded the way the geopreview import writes them.

``load_layer`` imports GeoJSON through ``importapi.pipeline.run_import`` (ogr2ogr into a staging table,
swapped into ``public.<layer_id>``: ``wkb_geometry`` in EPSG:4326 promoted to multi, key ``ogc_fid``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from app.settings import Settings
from importapi.pipeline import run_import
from tests.conftest import PG

SQUARE_DEG = 0.5


def square(west: float, south: float, size: float = SQUARE_DEG) -> list[list[float]]:
    """A closed ring, counter-clockwise."""
    return [[west, south], [west + size, south], [west + size, south + size], [west, south + size], [west, south]]


def polygon_features() -> list[dict[str, Any]]:
    """Six squares in a 3 x 2 grid south-west of (11.5, 21), with text, integer and decimal attributes."""
    features = []
    for index in range(6):
        west, south = 10.0 + (index % 3), 20.0 + (index // 3)
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "name": f"Zone {index + 1}" + (' "quoted" é' if index == 0 else ""),
                    "population": 1000 * (index + 1),
                    "share": round(0.125 * (index + 1), 3),
                },
                "geometry": {"type": "Polygon", "coordinates": [square(west, south)]},
            }
        )
    return features


def point_features() -> list[dict[str, Any]]:
    """Three points, one of them a multipoint, so the layer is promoted to MultiPoint."""
    return [
        {"type": "Feature", "properties": {"label": "a"}, "geometry": {"type": "Point", "coordinates": [-70.5, -33.4]}},
        {"type": "Feature", "properties": {"label": "b"}, "geometry": {"type": "Point", "coordinates": [-70.0, -33.0]}},
        {
            "type": "Feature",
            "properties": {"label": "c"},
            "geometry": {"type": "MultiPoint", "coordinates": [[-69.5, -32.5], [-69.6, -32.6]]},
        },
    ]


def load_layer(dbname: str, layer_id: str, features: list[dict[str, Any]], workdir: Path) -> None:
    """Write ``features`` as GeoJSON and import them into ``public.<layer_id>`` through the real pipeline."""
    source = workdir / f"{layer_id}.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    settings = Settings.from_env(
        {
            "HDX_GISDB_ADDR": PG["host"],
            "HDX_GISDB_PORT": PG["port"],
            "HDX_GISDB_DB": dbname,
            "HDX_GISDB_USER": PG["user"],
            "HDX_GISDB_PASS": PG["password"],
            "HDX_GIS_TMP": str(workdir / "import-tmp"),
        }
    )
    result = run_import(source, layer_id, settings=settings)
    assert result.feature_count == len(features), result


def tile_to_lonlat(z: int, x: int, y: int, px: float, py: float, extent: int = 4096) -> tuple[float, float]:
    """Tile coordinates (y down) of tile z/x/y to longitude and latitude."""
    size = 1 << z
    lon = (x + px / extent) / size * 360.0 - 180.0
    mercator = math.pi * (1 - 2 * (y + py / extent) / size)
    return lon, math.degrees(math.atan(math.sinh(mercator)))


def lonlat_to_tile(z: int, lon: float, lat: float) -> tuple[int, int]:
    """The tile of zoom z containing a point."""
    size = 1 << z
    x = int((lon + 180.0) / 360.0 * size)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * size)
    return x, y
