"""Mapbox Vector Tiles from PostGIS: request parsing, the tile query and cheap answers for empty tiles.

Geometries are reprojected to Web Mercator (EPSG:3857), simplified to half a pixel of the tile's zoom and
clipped by ``ST_AsMVTGeom``; ``ST_AsMVT`` encodes them in one MVT layer named after the layer id, with
``ogc_fid`` as feature id. Column names come from the request only after they matched a real column, and
reach the SQL as quoted identifiers.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from .errors import TileOutOfRange
from .layers import FEATURE_ID_COLUMN, Column, Layer

if TYPE_CHECKING:
    import psycopg

EXTENT = 4096
"""Tile coordinate resolution (the MVT default)."""

BUFFER = 64
"""Pixels of geometry kept outside the tile edge, so strokes and fills join across tiles."""

WORLD_METRES = 2 * math.pi * 6378137.0
MAX_MERCATOR_LAT = 85.0511287798066
TILE_FORMAT_VERSION = "2"
"""Part of every ETag: bump it when the tile encoding changes, so caches let go of old tiles."""

_ID_ALIAS = "__hdxrq_feature_id"


@dataclass(frozen=True)
class TileAddress:
    z: int
    x: int
    y: int

    @classmethod
    def parse(cls, z: str, x: str, y: str, max_zoom: int) -> TileAddress:
        """Validate z/x/y from the URL: integers with 0 <= z <= max_zoom and 0 <= x, y < 2**z."""
        try:
            zoom, column, row = int(z), int(x), int(y)
        except ValueError:
            raise TileOutOfRange(f"z/x/y must be integers, got {z[:12]!r}/{x[:12]!r}/{y[:12]!r}") from None
        if not 0 <= zoom <= max_zoom:
            raise TileOutOfRange(f"zoom {zoom} is outside 0..{max_zoom}")
        size = 1 << zoom
        if not (0 <= column < size and 0 <= row < size):
            raise TileOutOfRange(f"tile {zoom}/{column}/{row} does not exist: x and y must be in 0..{size - 1}")
        return cls(zoom, column, row)

    def lonlat_bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the tile grown by ``margin`` tiles on each side, in degrees."""
        size = 1 << self.z
        west = (self.x - margin) / size * 360.0 - 180.0
        east = (self.x + 1 + margin) / size * 360.0 - 180.0
        north = _tile_row_latitude(self.y - margin, size)
        south = _tile_row_latitude(self.y + 1 + margin, size)
        return west, south, east, north

    def search_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees where features of this tile (with its buffer) can be.

        Clamped to the world: the buffer of an edge tile must not wrap around the antimeridian. Features
        beyond the Mercator latitude limit appear in the top and bottom rows of tiles.
        """
        west, south, east, north = self.lonlat_bounds(margin=BUFFER / EXTENT)
        if self.y == 0:
            north = 90.0
        if self.y == (1 << self.z) - 1:
            south = -90.0
        return max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0)

    @property
    def zxy(self) -> tuple[int, int, int]:
        return self.z, self.x, self.y

    def children(self) -> list[TileAddress]:
        """The four tiles of the next zoom that cover this one."""
        x, y = 2 * self.x, 2 * self.y
        return [TileAddress(self.z + 1, x + dx, y + dy) for dy in (0, 1) for dx in (0, 1)]

    @property
    def pixel_metres(self) -> float:
        """The size of one tile coordinate unit, in Web Mercator metres."""
        return WORLD_METRES / (1 << self.z) / EXTENT


def _tile_row_latitude(row: float, size: int) -> float:
    mercator = math.pi * (1 - 2 * row / size)
    mercator = max(-math.pi, min(math.pi, mercator))
    return math.degrees(math.atan(math.sinh(mercator)))


def parse_fields(value: str | None) -> list[str]:
    """Column names of ``fields=ogc_fid,"name",...``: comma separated, each optionally double-quoted."""
    if not value or not value.strip():
        return []
    names = next(csv.reader([value], skipinitialspace=True), [])
    return [name.strip() for name in names if name.strip()]


def tile_etag(layer: Layer, geometry: Column, attributes: list[Column], tile: TileAddress) -> str:
    """A strong validator that changes when the layer is re-imported or a different tile is asked for."""
    parts = [TILE_FORMAT_VERSION, layer.layer_id, layer.generation, geometry.name, f"{tile.z}/{tile.x}/{tile.y}"]
    parts += [column.name for column in attributes]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def misses_extent(tile: TileAddress, extent: tuple[float, float, float, float] | None) -> bool:
    """True when the (buffered) tile cannot hold any feature of a layer with this lon/lat extent."""
    if extent is None:
        return True
    west, south, east, north = tile.search_bounds()
    xmin, ymin, xmax, ymax = extent
    return xmax < west or xmin > east or ymax < south or ymin > north


def render_tile(
    conn: psycopg.Connection, layer: Layer, geometry: Column, attributes: list[Column], tile: TileAddress
) -> bytes:
    """The encoded MVT of one tile (empty bytes when no feature falls in it)."""
    west, south, east, north = tile.search_bounds()
    params = {
        "west": west,
        "south": south,
        "east": east,
        "north": north,
        "z": tile.z,
        "x": tile.x,
        "y": tile.y,
        "tolerance": tile.pixel_metres / 2,
        "name": layer.layer_id,
        "extent": EXTENT,
        "buffer": BUFFER,
    }
    # Binary results: a multi-megabyte bytea is not hex-encoded by the server and decoded again here.
    row = conn.execute(_tile_query(layer, geometry, attributes), params, binary=True).fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


def _tile_query(layer: Layer, geometry: Column, attributes: list[Column]) -> sql.Composed:
    geom = sql.Identifier(geometry.name)
    selected = [sql.SQL("t.{}").format(sql.Identifier(column.name)) for column in attributes]
    feature_id = sql.SQL("NULL")
    if layer.has_feature_ids:
        selected.append(sql.SQL("t.{} AS {}").format(sql.Identifier(FEATURE_ID_COLUMN), sql.Identifier(_ID_ALIAS)))
        feature_id = sql.Literal(_ID_ALIAS)
    extra = sql.SQL("").join(sql.SQL(", ") + item for item in selected)
    return sql.SQL(
        """
        WITH bounds AS (
            SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
                   ST_MakeEnvelope(%(west)s, %(south)s, %(east)s, %(north)s, 4326) AS search
        )
        SELECT ST_AsMVT(features, %(name)s, %(extent)s, 'mvt_geometry', {feature_id})
        FROM (
            SELECT ST_AsMVTGeom(
                       ST_Simplify(ST_Transform(t.{geom}, 3857), %(tolerance)s, true),
                       bounds.tile, %(extent)s, %(buffer)s, true) AS mvt_geometry{extra}
            FROM {table} t, bounds
            WHERE t.{geom} && bounds.search
        ) features
        WHERE features.mvt_geometry IS NOT NULL
        """
    ).format(feature_id=feature_id, geom=geom, extra=extra, table=layer.table)
