"""What the tile endpoints do, apart from HTTP: one pooled connection per request, no request object."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import PoolTimeout

from core.errors import ServiceUnavailable

from .cache import TileCache
from .layers import SummaryCache, check_layer_id, load_layer
from .mvt import TileAddress, misses_extent, parse_fields, render_tile, tile_etag
from .prerender import read_stored
from .settings import TilesSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from core.runtime import Runtime


class TileTimeout(ServiceUnavailable):
    error_type = "tile-timeout"
    user_message = "The tile took too long to build"


@dataclass(frozen=True)
class TileResult:
    etag: str
    body: bytes | None
    """The tile, or None when the client's copy (If-None-Match) is current."""


class TileService:
    """Tiles, layer types and preview descriptions of the layers in PostGIS."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.summaries = SummaryCache()
        self.config = TilesSettings.of(runtime.settings)
        self.prefix = runtime.settings.postgis.table_name_prefix
        self.tiles = TileCache(self.config.memory_cache_mb * 1024 * 1024)

    def tile(
        self,
        layer_id: str,
        z: str,
        x: str,
        y: str,
        *,
        geom: str | None,
        fields: str | None,
        is_current: Callable[[str], bool],
    ) -> TileResult:
        """The tile z/x/y of a layer; ``is_current(etag)`` says whether the client already holds it."""
        check_layer_id(layer_id, self.prefix)
        address = TileAddress.parse(z, x, y, self.config.max_zoom)
        with self._connection() as conn:
            layer = load_layer(conn, layer_id)
            geometry = layer.geometry_column(geom)
            attributes = layer.attribute_columns(parse_fields(fields))
            etag = tile_etag(layer, geometry, attributes, address)
            if is_current(etag):
                return TileResult(etag, None)
            if misses_extent(address, self.summaries.get(conn, layer, geometry).extent):
                return TileResult(etag, b"")
            cached = self.tiles.get(etag)
            if cached is not None:
                return TileResult(etag, cached)
            stored = read_stored(conn, etag)
            if stored is not None:  # an expensive tile, built after the import
                self.tiles.put(etag, stored)
                return TileResult(etag, stored)
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(self.config.statement_timeout_ms)}")
                body = render_tile(conn, layer, geometry, attributes, address)
        if (time.perf_counter() - started) * 1000 >= self.config.memory_cache_min_build_ms:
            self.tiles.put(etag, body)
        return TileResult(etag, body)

    def layer_type(self, layer_id: str) -> str | None:
        """ST_GeometryType spelling of the layer's geometry type (``ST_MultiPolygon``)."""
        check_layer_id(layer_id, self.prefix)
        with self._connection() as conn:
            layer = load_layer(conn, layer_id)
            return self.summaries.get(conn, layer, layer.geometry_column(None)).geometry_type

    def preview(self, layer_id: str) -> dict[str, Any]:
        """What the preview page needs: geometry type, extent and the fields to request."""
        check_layer_id(layer_id, self.prefix)
        with self._connection() as conn:
            layer = load_layer(conn, layer_id)
            geometry = layer.geometry_column(None)
            summary = self.summaries.get(conn, layer, geometry)
        fields = [column.name for column in layer.map_attributes()]
        return {
            "layerId": layer_id,
            "geometryType": summary.geometry_type,
            "bounds": summary.extent,
            "geom": geometry.name,
            "fields": fields,
            "maxZoom": self.config.max_zoom,
            "basemapStyleUrl": self.config.basemap_style_url,
        }

    def _connection(self) -> AbstractContextManager[psycopg.Connection]:
        return pooled_connection(self.runtime)


@contextmanager
def pooled_connection(runtime: Runtime) -> Iterator[psycopg.Connection]:
    """A pooled connection; a busy pool, a lost database and a tile timeout become 503s."""
    try:
        with runtime.postgis.connection() as conn:
            yield conn
    except PoolTimeout:
        raise ServiceUnavailable("No database connection free; try again") from None
    except psycopg.errors.QueryCanceled:
        raise TileTimeout() from None
    except psycopg.OperationalError:
        raise ServiceUnavailable("The database is unavailable") from None
