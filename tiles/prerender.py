"""Prerendered tiles: the expensive tiles of a layer, built once after each import and kept in PostGIS.

A tile's cost grows with the features and vertices in it. At low zooms one tile of a dense layer holds
every feature (20,000 polygons: ~2.7 MB, close to a second to build), so the first map view of a fresh
layer would wait on exactly those tiles. After each import a job (:mod:`tiles.tasks`) walks the tile
pyramid from z0 down, breadth first, and builds every tile whose estimated cost reaches
``HDXRQ_TILES_PRERENDER_MIN_FEATURES``; it descends only below such tiles (a child never holds more than
its parent and its margin), and stops after ``HDXRQ_TILES_PRERENDER_MAX_TILES`` tiles, 64 MB stored or
``HDXRQ_TILES_PRERENDER_MAX_SEC`` seconds, whichever comes first.

The time is the bound that keeps the job from holding its worker: a few large polygons cost as much in
every tile their box touches, at every zoom (the estimate counts a feature's vertices wherever its box
reaches), so a 5-feature layer walked 2,000 tiles for 20 s. Breadth first, the tiles built within the time
are the low-zoom ones a first map view asks for; the others are built on request, as before.

Tiles are built with the attributes a map requests (:meth:`Layer.map_attributes`: what CKAN's map and the
preview ask for) and stored in ``hdxrq_tiles.prerendered`` under their ETag. The ETag holds the table's
generation, so a re-imported layer never serves an old tile; the job deletes the rows of older generations
and of layers that are gone, and deleting a layer deletes its rows (:func:`forget_layer`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from .errors import UnknownLayer
from .layers import Column, Layer, load_layer, summarise_layer
from .mvt import TileAddress, misses_extent, render_tile, tile_etag

if TYPE_CHECKING:
    from .settings import TilesSettings

log = logging.getLogger(__name__)

SCHEMA = "hdxrq_tiles"
STORE = f"{SCHEMA}.prerendered"
VERTICES_PER_FEATURE = 32
"""Cost model: one feature costs about as much to build as 32 vertices (measured on PostGIS 3.3)."""
STATEMENT_TIMEOUT_MS = 300_000
"""A background build may take long; it must not run forever (the job's time left bounds it further)."""

_CREATE_STORE = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {STORE} (
        etag text PRIMARY KEY,
        layer_id text NOT NULL,
        generation text NOT NULL,
        z integer NOT NULL, x integer NOT NULL, y integer NOT NULL,
        body bytea NOT NULL,
        build_ms real NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    f"CREATE INDEX IF NOT EXISTS prerendered_layer_idx ON {STORE} (layer_id)",
)

_COST_SQL = """
SELECT count(*), coalesce(sum(ST_NPoints(t.{geom})), 0)
FROM {table} t
WHERE t.{geom} && ST_MakeEnvelope(%s, %s, %s, %s, 4326)
"""


MAX_STORED_BYTES = 64 * 1024 * 1024
"""Stop a layer's prerender once this much is stored: one huge feature (or a huge attribute) makes every tile
it touches cost the same at every zoom, and would otherwise fill the store and hold its worker for minutes."""


@dataclass
class PrerenderReport:
    """What one prerender run did."""

    layer_id: str
    generation: str
    stored: int = 0
    already_stored: int = 0
    stored_bytes: int = 0
    deepest_zoom: int | None = None
    seconds: float = 0.0
    state: str = "done"
    """``done``; ``time-limit`` when ``HDXRQ_TILES_PRERENDER_MAX_SEC`` ran out first; ``superseded`` when the
    layer was re-imported meanwhile (that import queues its own run)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_stored(conn: psycopg.Connection, etag: str) -> bytes | None:
    """The prerendered tile with this ETag, if there is one."""
    try:
        row = conn.execute(f"SELECT body FROM {STORE} WHERE etag = %s", (etag,), binary=True).fetchone()
    except psycopg.errors.UndefinedTable:  # nothing was ever prerendered in this database
        return None
    return bytes(row[0]) if row else None


def forget_layer(conn: psycopg.Connection, layer_id: str) -> None:
    """Delete a layer's prerendered tiles; safe inside the caller's transaction (no error if no store)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (STORE,)).fetchone()
    if row and row[0]:
        conn.execute(f"DELETE FROM {STORE} WHERE layer_id = %s", (layer_id,))


def prerender(
    conn: psycopg.Connection, layer: Layer, config: TilesSettings, clock: Callable[[], float] = time.monotonic
) -> PrerenderReport:
    """Build and store the expensive tiles of ``layer`` (an autocommit connection) for at most
    ``HDXRQ_TILES_PRERENDER_MAX_SEC`` by ``clock``; safe to run twice."""
    started = clock()
    deadline = started + config.prerender_max_sec
    report = PrerenderReport(layer.layer_id, layer.generation)
    ensure_store(conn)
    discard_stale(conn, layer)
    geometry = layer.geometry_column(None)
    attributes = layer.map_attributes()
    extent = summarise_layer(conn, layer, geometry).extent
    min_cost = config.prerender_min_features
    frontier = deque([TileAddress(0, 0, 0)])
    while (
        frontier
        and report.stored + report.already_stored < config.prerender_max_tiles
        and report.stored_bytes < MAX_STORED_BYTES
    ):
        left_ms = int((deadline - clock()) * 1000)
        if left_ms <= 0:
            report.state = "time-limit"
            break
        tile = frontier.popleft()
        if misses_extent(tile, extent) or tile_cost(conn, layer, geometry, tile) < min_cost:
            continue
        etag = tile_etag(layer, geometry, attributes, tile)
        if is_stored(conn, etag):
            report.already_stored += 1
        else:
            timeout_ms = min(left_ms, STATEMENT_TIMEOUT_MS)
            try:
                size = _build_and_store(conn, layer, geometry, attributes, tile, etag, timeout_ms)
            except psycopg.errors.QueryCanceled:  # the time ran out while this tile was being built
                report.state = "time-limit"
                break
            if size is None:
                report.state = "superseded"
                break
            report.stored += 1
            report.stored_bytes += size
        report.deepest_zoom = tile.z
        if tile.z < config.max_zoom:
            frontier.extend(tile.children())
    report.seconds = round(clock() - started, 3)
    return report


def tile_cost(conn: psycopg.Connection, layer: Layer, geometry: Column, tile: TileAddress) -> float:
    """Estimated build cost of a tile, in features (each ``VERTICES_PER_FEATURE`` vertices count as one)."""
    query = sql.SQL(_COST_SQL).format(geom=sql.Identifier(geometry.name), table=layer.table)
    row = conn.execute(query, tile.search_bounds()).fetchone()
    features, vertices = row if row else (0, 0)
    return float(features) + float(vertices) / VERTICES_PER_FEATURE


def ensure_store(conn: psycopg.Connection) -> None:
    """Create the store once; concurrent jobs wait for each other instead of colliding."""
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (STORE,)).fetchone() == (True,):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('hdxrq-tiles-store'))")
        for statement in _CREATE_STORE:
            conn.execute(statement)


def discard_stale(conn: psycopg.Connection, layer: Layer) -> None:
    """Delete tiles of the layer's older generations and of layers that no longer exist."""
    conn.execute(f"DELETE FROM {STORE} WHERE layer_id = %s AND generation <> %s", (layer.layer_id, layer.generation))
    conn.execute(
        f"DELETE FROM {STORE} WHERE layer_id IN (SELECT DISTINCT layer_id FROM {STORE}"
        " WHERE to_regclass('public.' || quote_ident(layer_id)) IS NULL)"
    )


def is_stored(conn: psycopg.Connection, etag: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {STORE} WHERE etag = %s", (etag,)).fetchone() is not None


def _build_and_store(
    conn: psycopg.Connection,
    layer: Layer,
    geometry: Column,
    attributes: list[Column],
    tile: TileAddress,
    etag: str,
    timeout_ms: int,
) -> int | None:
    """Build one tile and store it: its size; None (nothing stored) when the layer was re-imported since ``layer``.
    A build longer than ``timeout_ms`` raises :class:`psycopg.errors.QueryCanceled` and stores nothing."""
    with conn.transaction():
        conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        started = time.perf_counter()
        body = render_tile(conn, layer, geometry, attributes, tile)
        build_ms = (time.perf_counter() - started) * 1000
        # The tile query holds a lock on the table until commit: checked now, the generation cannot change
        # before the tile is stored.
        try:
            if load_layer(conn, layer.layer_id).generation != layer.generation:
                return None
        except UnknownLayer:
            return None
        conn.execute(
            f"INSERT INTO {STORE} (etag, layer_id, generation, z, x, y, body, build_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (etag) DO NOTHING",
            (etag, layer.layer_id, layer.generation, tile.z, tile.x, tile.y, body, build_ms),
        )
    log.info("prerendered %s tile %d/%d/%d: %d bytes in %.0f ms", layer.layer_id, *tile.zxy, len(body), build_ms)
    return len(body)
