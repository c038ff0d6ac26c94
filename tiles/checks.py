"""run-checks entries of the tiles slice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .assets import MAPLIBRE_DIST, missing_maplibre_files

if TYPE_CHECKING:
    from core.runtime import Runtime

# One point at (0, 0) in the world tile: exercises ST_Transform, ST_AsMVTGeom and ST_AsMVT.
_PROBE_SQL = """
SELECT length(ST_AsMVT(q, 'check'))
FROM (SELECT ST_AsMVTGeom(ST_Transform(ST_SetSRID(ST_MakePoint(0, 0), 4326), 3857),
                          ST_TileEnvelope(0, 0, 0)) AS geom) q
"""


def check_tile_rendering(runtime: Runtime) -> None:
    """Raise unless PostGIS (through the pool the tiles use) encodes a one-point tile."""
    with runtime.postgis.connection() as conn:
        row = conn.execute(_PROBE_SQL).fetchone()
    if not row or not row[0]:
        raise RuntimeError("ST_AsMVT returned an empty tile for a point inside it")


def check_preview_assets(runtime: Runtime) -> None:
    """Raise unless the MapLibre files the preview page loads are installed."""
    missing = missing_maplibre_files()
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)} in {MAPLIBRE_DIST}: run npm install (./dev.sh up)")
