"""Layer metadata: which tables are layers, their columns, generation, geometry type and extent.

A layer is a table ``public.<layer_id>`` written by the geopreview import (CONTRACTS.md §2.2): geometry
column ``wkb_geometry`` in EPSG:4326, integer key ``ogc_fid``. Every request reads the table's columns and
its *generation* in one catalog query; the generation changes whenever the table is re-created, truncated
or altered, so it keys both the HTTP ``ETag`` and the in-process cache of the (costlier) extent.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg import sql

from .errors import UnknownColumn, UnknownLayer

if TYPE_CHECKING:
    import psycopg

LAYER_ID_PATTERN = re.compile(r"^[a-z0-9_]{1,63}$")
"""Layer ids are unquoted PostgreSQL table names (63 bytes at most)."""

DEFAULT_GEOMETRY_COLUMN = "wkb_geometry"
FEATURE_ID_COLUMN = "ogc_fid"
GEOMETRY_UDT = "geometry"

MAP_DATA_TYPES = frozenset(
    {
        "character varying",
        "text",
        "character",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "double precision",
        "real",
        "boolean",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
    }
)
"""Attribute types a map shows (scalars that read well in a popup); the import leaves only such columns."""

# One round trip: the generation from pg_class (oid: re-created; relfilenode: truncated or rewritten;
# xmin of the catalog row: altered or renamed) and the columns as information_schema reports them.
_METADATA_SQL = """
SELECT c.oid::text || '.' || c.relfilenode::text || '.' || c.xmin::text AS generation,
       col.column_name, col.data_type, col.udt_name
FROM pg_catalog.pg_class c
JOIN information_schema.columns col
  ON col.table_schema = 'public' AND col.table_name = c.relname
WHERE c.oid = to_regclass('public.' || quote_ident(%(table)s))
ORDER BY col.ordinal_position
"""

# ST_GeometryType's spelling (what CKAN's map expects) of the type names in geometry_columns.
_GEOMETRY_TYPE_NAMES = {
    "POINT": "ST_Point",
    "MULTIPOINT": "ST_MultiPoint",
    "LINESTRING": "ST_LineString",
    "MULTILINESTRING": "ST_MultiLineString",
    "POLYGON": "ST_Polygon",
    "MULTIPOLYGON": "ST_MultiPolygon",
    "GEOMETRYCOLLECTION": "ST_GeometryCollection",
}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    udt_name: str

    @property
    def is_geometry(self) -> bool:
        return self.udt_name == GEOMETRY_UDT


@dataclass(frozen=True)
class Layer:
    """A layer table as the catalog describes it right now."""

    layer_id: str
    generation: str
    columns: dict[str, Column]

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier("public", self.layer_id)

    @property
    def has_feature_ids(self) -> bool:
        column = self.columns.get(FEATURE_ID_COLUMN)
        return column is not None and column.data_type in {"integer", "bigint", "smallint"}

    def geometry_column(self, name: str | None) -> Column:
        """The geometry column ``name`` (default ``wkb_geometry``); 400 when the table has none of that name."""
        column = self.columns.get(name or DEFAULT_GEOMETRY_COLUMN)
        if column is None or not column.is_geometry:
            raise UnknownColumn(f"Layer {self.layer_id} has no geometry column {_shown(name)}")
        return column

    def attribute_columns(self, names: list[str]) -> list[Column]:
        """The non-geometry columns ``names`` in table order, without repeats; 400 naming the first unknown one.

        Table order, not request order: MVT attributes are a map, so every order of the same names is the
        same tile, with one ETag and one prerendered copy.
        """
        for name in names:
            column = self.columns.get(name)
            if column is None or column.is_geometry:
                raise UnknownColumn(f"Layer {self.layer_id} has no attribute column {_shown(name)}")
        wanted = set(names)
        return [column for name, column in self.columns.items() if name in wanted]

    def map_attributes(self) -> list[Column]:
        """The columns a map asks for: every scalar attribute (CKAN's map and the preview request these)."""
        return [column for column in self.columns.values() if column.data_type in MAP_DATA_TYPES]


@dataclass(frozen=True)
class LayerSummary:
    """What the map needs beyond the columns: geometry type and extent (lon/lat), per generation."""

    geometry_type: str | None
    extent: tuple[float, float, float, float] | None


def check_layer_id(layer_id: str, prefix: str) -> None:
    """404 unless ``layer_id`` is a well-formed layer table name with the import prefix."""
    if not LAYER_ID_PATTERN.fullmatch(layer_id) or not layer_id.startswith(f"{prefix}_"):
        raise UnknownLayer(f"No layer {_shown(layer_id)}")


def load_layer(conn: psycopg.Connection, layer_id: str) -> Layer:
    """The layer's columns and generation, or 404 when no such table exists."""
    rows = conn.execute(_METADATA_SQL, {"table": layer_id}).fetchall()
    if not rows:
        raise UnknownLayer(f"No layer {layer_id}")
    columns = {name: Column(name, data_type, udt) for _, name, data_type, udt in rows}
    return Layer(layer_id=layer_id, generation=rows[0][0], columns=columns)


def summarise_layer(conn: psycopg.Connection, layer: Layer, geometry: Column) -> LayerSummary:
    """Geometry type and extent of one geometry column (a scan of the table: cache the result)."""
    query = sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent({geom}) AS e FROM {table}) s"
    ).format(geom=sql.Identifier(geometry.name), table=layer.table)
    row = conn.execute(query).fetchone()
    extent = tuple(float(value) for value in row) if row and row[0] is not None else None  # type: ignore[misc]
    return LayerSummary(geometry_type=_geometry_type(conn, layer, geometry), extent=extent)  # type: ignore[arg-type]


def _geometry_type(conn: psycopg.Connection, layer: Layer, geometry: Column) -> str | None:
    declared = conn.execute(
        "SELECT upper(type) FROM geometry_columns"
        " WHERE f_table_schema = 'public' AND f_table_name = %s AND f_geometry_column = %s",
        (layer.layer_id, geometry.name),
    ).fetchone()
    if declared and declared[0] in _GEOMETRY_TYPE_NAMES:
        return _GEOMETRY_TYPE_NAMES[declared[0]]
    # A generic geometry column (mixed or unknown types): report the first feature's type, as postile did.
    query = sql.SQL("SELECT ST_GeometryType({geom}) FROM {table} WHERE {geom} IS NOT NULL LIMIT 1").format(
        geom=sql.Identifier(geometry.name), table=layer.table
    )
    row = conn.execute(query).fetchone()
    return row[0] if row else None


@dataclass
class SummaryCache:
    """Thread-safe LRU of layer summaries keyed by (layer, generation, geometry column)."""

    max_entries: int = 512
    _entries: OrderedDict[tuple[str, str, str], LayerSummary] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, conn: psycopg.Connection, layer: Layer, geometry: Column) -> LayerSummary:
        """The cached summary of this generation of the layer, computed on first use."""
        key = (layer.layer_id, layer.generation, geometry.name)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        summary = summarise_layer(conn, layer, geometry)
        with self._lock:
            self._entries[key] = summary
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return summary


def _shown(value: str | None) -> str:
    """A client-supplied name, bounded in length, for an error message."""
    text = value if value is not None else DEFAULT_GEOMETRY_COLUMN
    return repr(text[:80])
