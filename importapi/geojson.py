"""The fast path for GeoJSON: stream a FeatureCollection's features straight into ``COPY``.

GDAL's GeoJSON reader scans a file twice (once for the schema, once for the features) with a general
JSON parser, and ogr2ogr then reprojects, promotes and formats every feature: several times the cost of
the ``COPY`` itself. Most files CKAN users upload are the simple case, and for it this module does the
same job in one pass:

* features are read in batches of about 2 MB, so memory stays flat on large files;
* each batch is decoded once, properties into typed objects and geometries' coordinates left as text, and
  :mod:`importapi.ewkb` makes the batch's geometries multi-type EWKB with SRID 4326 in a few vectorised
  passes, leaving out features with coordinates outside ±180/±90;
* properties get the column names and types the ogr2ogr path ends with (GDAL's PostgreSQL name
  laundering; ``integer``, ``numeric`` for floats and 64-bit integers, ``character varying`` for text and
  booleans), widened in place when a later feature needs it.

Anything outside that case raises :class:`NotSimple` (before or during the load) and the pipeline uses
GDAL instead: a CRS other than EPSG:4326/CRS84, mixed geometry families, GeometryCollections, empty
geometries, nested (list or object) properties, booleans mixed with other values, string feature ids,
column names that collide after laundering, or text PostgreSQL refuses.
"""

from __future__ import annotations

import functools
import gc
import operator
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import msgspec
import orjson
import psycopg
from psycopg import sql

from .errors import ImportTimeout
from .ewkb import NULL, SRID, GeometryBatch, NotSimple, RawGeometry, encode, encode_raw

__all__ = ["BATCH_BYTES", "FastLoad", "NotSimple", "launder", "load"]

BATCH_BYTES = 2 << 20
"""Bytes of features decoded per call."""

_MAX_BUFFER = 64 << 20
"""A single feature larger than this goes to GDAL (its reader streams inside features)."""
_FEATURES_KEY = re.compile(rb'"features"\s*:\s*\[')
_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_CUT_ATTEMPTS = 8
_WGS84_NAMES = {
    "urn:ogc:def:crs:ogc:1.3:crs84",
    "urn:ogc:def:crs:ogc::crs84",
    "ogc:crs84",
    "crs84",
    "epsg:4326",
    "urn:ogc:def:crs:epsg::4326",
    "urn:ogc:def:crs:epsg:6.6:4326",
    "http://www.opengis.net/def/crs/epsg/0/4326",
    "http://www.opengis.net/def/crs/ogc/1.3/crs84",
}
_RESERVED = {"ogc_fid", "wkb_geometry"}
_MAX_IDENTIFIER_BYTES = 63
_INT32 = (-(2**31), 2**31 - 1)

# Column kinds: "null" (no value yet) becomes any other; integer < numeric < text widen in that order;
# "boolean" stands apart (mixed with anything else, GDAL decides).
_KIND_SQL = {
    "null": "character varying",
    "integer": "integer",
    "numeric": "numeric",
    "text": "character varying",
    "boolean": "character varying",
}
_WIDENING = ("integer", "numeric", "text")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


# --- typed decoding ---------------------------------------------------------------------------------------
# The usual batch is decoded by msgspec straight into these classes (properties typed, geometries' coordinates
# left as JSON text for :func:`ewkb.encode_raw`): it checks the structure in C and builds fewer objects than
# general JSON decoding. A batch they do not describe (a string id, nested properties...) fails validation and is
# decoded by orjson into plain objects, which the general checks then judge, so both routes accept and
# reject exactly the same files.

# Integers orjson keeps as integers (beyond 64 bits it makes floats); msgspec bounds stop at int64, so the
# rare batch with an integer between 2**63 and 2**64 takes the orjson route
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Value = str | _Int | float | bool | None


class _Feature(msgspec.Struct, tag="Feature", tag_field="type"):
    properties: dict[str, _Value] | None = None
    geometry: RawGeometry | None = None
    id: _Int | float | None = None


_FEATURE_LIST = msgspec.json.Decoder(list[_Feature])
_EMPTY_PROPERTIES: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary({_Feature: {}})
"""Feature class -> what stands for absent properties (a dict, or an all-None properties struct); weak, so
classes of decoders the cache below has dropped can go."""


@functools.lru_cache(maxsize=16)
def _known_keys_decoder(keys: tuple[str, ...]) -> msgspec.json.Decoder:
    """A decoder for features whose properties are exactly ``keys`` or fewer (as a struct, not a dict).

    Once the first batch has fixed the columns, the usual later batch has no new property: decoding its
    properties into a struct with those fields (absent ones None) is cheaper than building a dict per
    feature. A batch with a new property fails validation and takes the dict route.
    """
    names = [f"p{index}" for index in range(len(keys))]
    properties = msgspec.defstruct(
        "_KnownProperties",
        [(name, _Value, None) for name in names],
        rename=dict(zip(names, keys, strict=True)),
        forbid_unknown_fields=True,
    )
    feature = msgspec.defstruct(
        "_KnownFeature",
        [("properties", properties | None, None)],
        bases=(_Feature,),
        tag="Feature",
        tag_field="type",
    )
    _EMPTY_PROPERTIES[feature] = properties()
    return msgspec.json.Decoder(list[feature])


@dataclass
class FastLoad:
    """What the fast path loaded into the staging table."""

    layer_name: str
    loaded: int = 0
    removed: int = 0
    geometry_type: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    """Source property name -> column kind, in column order."""


def launder(name: str) -> str:
    """The column name GDAL's PostgreSQL driver gives a property (ASCII lower case, ``'-#`` to ``_``)."""
    lowered = "".join(ch.lower() if ch.isascii() else ch for ch in name)
    return lowered.translate(str.maketrans("'-#", "___"))


def load(
    path: Path,
    conn: psycopg.Connection,
    table: sql.Composable,
    *,
    logged: bool,
    deadline: float,
    on_progress: Callable[[float], None] | None = None,
) -> FastLoad:
    """Create ``table`` and COPY the features of the GeoJSON file at ``path`` into it.

    ``conn`` must be in autocommit mode; ``deadline`` is a ``time.monotonic()`` value. Raises
    :class:`NotSimple` when the file needs GDAL (the caller drops the table and falls back) and
    :class:`ImportTimeout` past the deadline.
    """
    size = max(path.stat().st_size, 1)
    # The decoders allocate millions of container objects per batch; the cyclic collector would scan them
    # all again and again (half the parse time) although none is in a cycle. Plain refcounting frees them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(path, conn, table, size, logged=logged, deadline=deadline, on_progress=on_progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(
    path: Path,
    conn: psycopg.Connection,
    table: sql.Composable,
    size: int,
    *,
    logged: bool,
    deadline: float,
    on_progress: Callable[[float], None] | None,
) -> FastLoad:
    with path.open("rb") as handle:
        columns: dict[str, str] = {}
        reader = _Reader(handle, columns)
        result = FastLoad(layer_name=_layer_name(reader.header, path), columns=columns)
        writer = _TableWriter(conn, table, logged=logged, result=result, warming=_warm_up(conn))
        try:
            for batch in reader.batches():
                if time.monotonic() > deadline:
                    raise ImportTimeout("Loading the layer took longer than allowed")
                _write_batch(writer, result, batch.features, _geometry_column(batch))
                if on_progress is not None:
                    on_progress(round(100.0 * batch.end / size, 1))
        except BaseException as error:
            writer.abort(error)
            raise
        writer.close()
    if result.geometry_type is None:
        raise NotSimple("no feature has a geometry")
    return result


def _geometry_column(batch: _Batch) -> GeometryBatch:
    """The batch's geometries: from the coordinates the typed decoder left as text, or read again."""
    if batch.features and isinstance(batch.features[0], _Feature):
        column = encode_raw([feature.geometry for feature in batch.features])
        if column is not None:
            return column
    return encode(batch.text)


def _write_batch(writer: _TableWriter, result: FastLoad, features: list[Any], column: GeometryBatch) -> None:
    if column.count != len(features):
        raise NotSimple("the geometry column has another number of features")
    if column.family is not None and column.family != result.geometry_type:
        if result.geometry_type is not None:
            raise NotSimple(f"mixed geometry types ({result.geometry_type}, {column.family})")
        result.geometry_type = column.family
    properties = _properties(features)
    if column.removed:
        left_out = set(column.removed)
        properties = [item for index, item in enumerate(properties) if index not in left_out]
        result.removed += len(column.removed)
    writer.write(properties, column.geometries)


def _warm_up(conn: psycopg.Connection) -> threading.Thread:
    """Have the server load PostGIS for this connection while this process parses the first batch.

    A connection's first use of the geometry type loads the PostGIS library into its server process
    (17-75 ms measured here). Left to the CREATE TABLE, that wait would come after the first batch is
    parsed, with this process idle; in a thread it overlaps the parse (psycopg serialises the two
    statements on the connection, and the thread waits on the socket without the GIL).
    """
    thread = threading.Thread(target=_load_postgis, args=(conn,), name="hdxrq-postgis-warm-up", daemon=True)
    thread.start()
    return thread


def _load_postgis(conn: psycopg.Connection) -> None:
    try:
        conn.execute("SELECT NULL::geometry(Point, 4326)")
    except psycopg.Error:  # the CREATE TABLE meets the same problem and reports it
        pass


def _layer_name(header: dict[str, Any], path: Path) -> str:
    name = header.get("name")
    return name if isinstance(name, str) and name else path.stem


def _check_crs(members: dict[str, Any]) -> None:
    crs = members.get("crs")
    if crs is None:
        return
    try:
        name = crs["properties"]["name"]
    except (KeyError, TypeError):
        raise NotSimple("crs member GDAL must interpret") from None
    if not isinstance(name, str) or name.strip().lower() not in _WGS84_NAMES:
        raise NotSimple(f"crs {name!r} needs reprojection")


# --- reading ---------------------------------------------------------------------------------------------


class _Reader:
    """The members before ``features``, then batches of features with where each ends in the file.

    Every piece handed to the decoders is a complete JSON text, and a cut between features is only
    accepted when the text before it parses as a list: a ``},{`` inside a string or a nested array can
    never produce a valid list, so the batches are exactly the array's elements. ``known`` is the live
    column map (the writer's, updated between batches).
    """

    def __init__(self, handle: BinaryIO, known: dict[str, str]) -> None:
        self.handle = handle
        self.known = known
        buffer = handle.read(BATCH_BYTES)
        self.offset = 0
        """File offset of the buffer's first byte."""
        if buffer.startswith(b"\xef\xbb\xbf"):
            buffer, self.offset = buffer[3:], 3
        key = _FEATURES_KEY.search(buffer)
        if key is None:
            raise NotSimple("not a FeatureCollection with its features near the start")
        try:
            header = orjson.loads(buffer[: key.start()].rstrip().rstrip(b",") + b"}")
        except orjson.JSONDecodeError:
            raise NotSimple("members before the features are not plain JSON") from None
        if not isinstance(header, dict) or header.get("type") != "FeatureCollection":
            raise NotSimple("not a FeatureCollection")
        _check_crs(header)
        self.header: dict[str, Any] = header
        self.buffer = buffer[key.end() :]
        self.offset += key.end()

    def batches(self) -> Iterator[_Batch]:
        """The batches of features, in file order."""
        at_end = False
        while True:
            if not at_end and len(self.buffer) < BATCH_BYTES:
                more = self.handle.read(BATCH_BYTES)
                at_end = not more
                self.buffer += more
                continue
            if at_end:
                yield self._last_batch()
                return
            batch = self._cut()
            if batch is not None:
                yield batch
                continue
            if len(self.buffer) > _MAX_BUFFER:
                raise NotSimple("a single feature is too large for the fast path")
            more = self.handle.read(BATCH_BYTES)
            at_end = not more
            self.buffer += more

    def _cut(self) -> _Batch | None:
        """Decode the features before the last boundary that ends a feature; the rest stays buffered."""
        buffer = self.buffer
        boundaries = list(_BOUNDARY.finditer(buffer, max(0, len(buffer) - BATCH_BYTES // 2)))
        if not boundaries:
            boundaries = list(_BOUNDARY.finditer(buffer))
        for boundary in reversed(boundaries[-_CUT_ATTEMPTS:]):
            batch = self._batch(boundary.start() + 1)
            if batch is None:
                continue
            self.buffer = buffer[boundary.end() - 1 :]
            self.offset += boundary.end() - 1
            return batch
        return None

    def _last_batch(self) -> _Batch:
        """The remaining features, then the closing ``]`` and any members after the array."""
        buffer = self.buffer
        position = len(buffer)
        for _ in range(_CUT_ATTEMPTS):
            position = buffer.rfind(b"]", 0, position)
            if position < 0:
                break
            batch = self._batch(position)
            if batch is None:
                continue
            _check_trailer(buffer[position + 1 :])
            return batch
        raise NotSimple("the features array is not valid JSON")

    def _batch(self, length: int) -> _Batch | None:
        """The buffer's first ``length`` bytes as a batch, or None when they are not a run of JSON values."""
        text = b"".join((b"[", memoryview(self.buffer)[:length], b"]"))  # one copy, not two
        features = _decode(text, self.known)
        if features is None:
            return None
        return _Batch(features, text, self.offset + length)


@dataclass(frozen=True)
class _Batch:
    """A run of features, decoded, as the JSON array text they were decoded from, and where it ends in the file."""

    features: list[Any]
    text: bytes
    end: int


def _decode(text: bytes, known: dict[str, str] | None = None) -> list[Any] | None:
    """The features of a JSON array: typed when they fit :class:`_Feature`, else plain; None if not JSON.

    With ``known`` columns, features without other properties get them as a struct of those columns.
    """
    if known:
        try:
            return _known_keys_decoder(tuple(known)).decode(text)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            return None
    try:
        return _FEATURE_LIST.decode(text)
    except msgspec.ValidationError:
        pass  # valid JSON of another shape: decoded generally below, judged by the general checks
    except msgspec.DecodeError:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _check_trailer(trailer: bytes) -> None:
    rest = trailer.strip()
    if rest == b"}":
        return
    if not rest.startswith(b","):
        raise NotSimple("unexpected text after the features")
    try:
        members = orjson.loads(b"{" + rest[1:])
    except orjson.JSONDecodeError:
        raise NotSimple("members after the features are not plain JSON") from None
    if "crs" in members:
        raise NotSimple("crs member after the features")


# --- properties ------------------------------------------------------------------------------------------


def _properties(batch: list[Any]) -> list[Any]:
    """Each feature's properties: a dict, or a struct of the known columns (see :func:`_known_keys_decoder`)."""
    if batch and isinstance(batch[0], _Feature):
        empty = _EMPTY_PROPERTIES[type(batch[0])]
        return [feature.properties or empty for feature in batch]
    properties_out: list[dict[str, Any]] = []
    for feature in batch:
        if type(feature) is not dict or feature.get("type") != "Feature":
            raise NotSimple("an element of features is not a Feature")
        if type(feature.get("id")) is str:
            raise NotSimple("string feature ids (GDAL turns them into a column)")
        properties = feature.get("properties") or {}
        if type(properties) is not dict:
            raise NotSimple("properties that are not an object")
        properties_out.append(properties)
    return properties_out


# --- writing ---------------------------------------------------------------------------------------------


def _columns(properties: list[dict[str, Any]], keys: list[str]) -> list[list[Any]]:
    """The batch's property values column by column (None where a feature lacks one)."""
    try:
        return [[item[key] for item in properties] for key in keys]
    except KeyError:  # some features lack a property
        count = len(properties)
        return [list(map(dict.get, properties, repeat(key, count))) for key in keys]


def _column_text(column: list[Any], kind: str) -> list[str]:
    """One column of a batch in COPY text format (``\\N`` for NULL, special characters escaped).

    Booleans read ``true``/``false``, as the ogr2ogr path shows GDAL's booleans after the conversion to
    ``character varying``; numbers in a text column are written in their shortest exact form. The work is
    done a column at a time with C-level ``map`` calls: the per-value Python code is the load's hot spot.
    """
    if kind == "boolean":
        return [NULL if value is None else ("true" if value else "false") for value in column]
    nulls = list(compress(range(len(column)), map(operator.is_, column, repeat(None)))) if None in column else []
    if kind != "text" and kind != "null":
        texts = _number_texts(column)
        # Whole floats without ".0" (so numeric shows 3, as from GDAL); int and exponent forms never end so
        for index in compress(range(len(texts)), map(str.endswith, texts, repeat(".0"))):
            texts[index] = texts[index][:-2]
    else:
        texts = list(map(str, column))
        for index in nulls:
            texts[index] = ""
        joined = "\n".join(texts)
        if "\\" in joined or "\t" in joined or "\r" in joined or joined.count("\n") != len(texts) - 1:
            texts = [text.translate(_COPY_ESCAPES) for text in texts]
    for index in nulls:
        texts[index] = NULL
    return texts


def _number_texts(column: list[Any]) -> list[str]:
    """Shortest round-trip spelling of each number (``null`` for None), by orjson: far cheaper than repr.

    orjson writes exponents as ``1e-7`` where Python writes ``1e-07``: the same ``numeric``. Integers past
    64 bits (orjson refuses them) take Python's spelling.
    """
    try:
        return orjson.dumps(column)[1:-1].decode().split(",")
    except orjson.JSONEncodeError:
        return list(map(str, column))


class _TableWriter:
    """Creates the staging table from the first batch and COPYs batches, widening columns as needed."""

    def __init__(
        self,
        conn: psycopg.Connection,
        table: sql.Composable,
        *,
        logged: bool,
        result: FastLoad,
        warming: threading.Thread | None = None,
    ) -> None:
        self.conn = conn
        self.warming = warming
        self.table = table
        self.logged = logged
        self.result = result
        self.columns = result.columns
        self.names: dict[str, str] = {}
        self.created = False
        self.added_late = False
        self.copy_cm: Any = None
        self.copy: Any = None

    def write(self, properties: list[dict[str, Any]], geometries: list[str]) -> None:
        """COPY one batch: the features' properties and their geometries' COPY text."""
        if not geometries:
            return
        if type(properties[0]) is dict:
            keys = self._keys(properties)
            columns = _columns(properties, keys)
        else:  # properties structs of the known columns (see _known_keys_decoder)
            keys = list(self.columns)
            columns = [list(map(operator.attrgetter(f"p{index}"), properties)) for index in range(len(keys))]
        changes = self._schema_changes(keys, columns)
        if changes or not self.created:
            self._end_copy()
            self._apply(changes)
        if self.copy is None:
            self._begin_copy()
        text_columns = [_column_text(column, self.columns[key]) for key, column in zip(keys, columns, strict=True)]
        text_columns.append(geometries)
        payload = "\n".join(map("\t".join, zip(*text_columns, strict=True))) + "\n"
        try:
            self.copy.write(payload.encode())
        except psycopg.errors.DataError as error:
            raise NotSimple(f"PostgreSQL refused a value: {type(error).__name__}") from None
        self.result.loaded += len(geometries)

    def close(self) -> None:
        self._warmed()
        self._end_copy()
        if not self.created:
            raise NotSimple("no features")
        if self.added_late:
            self._move_geometry_last()

    def _move_geometry_last(self) -> None:
        """Put the geometry after columns added during the load, where GDAL's order has it (one rewrite)."""
        geometry = sql.SQL("geometry({}, {})").format(sql.SQL(self.result.geometry_type or ""), sql.SQL(str(SRID)))
        for statement in (
            "ALTER TABLE {t} ADD COLUMN wkb_geometry_last {g}",
            "UPDATE {t} SET wkb_geometry_last = wkb_geometry",
            "ALTER TABLE {t} DROP COLUMN wkb_geometry",
            "ALTER TABLE {t} RENAME COLUMN wkb_geometry_last TO wkb_geometry",
        ):
            self.conn.execute(sql.SQL(statement).format(t=self.table, g=geometry))

    def _keys(self, properties: list[dict[str, Any]]) -> list[str]:
        """Column keys after this batch: the known ones, then new ones in order of first appearance."""
        known = self.columns.keys()
        if set().union(*properties) <= known:
            return list(known)
        ordered = dict.fromkeys(known)
        for item in properties:
            ordered.update(dict.fromkeys(item))
        return list(ordered)

    def _schema_changes(self, keys: list[str], columns: list[list[Any]]) -> dict[str, str]:
        """New or widened columns this batch needs: property name -> kind, in column order."""
        changes = {}
        for key, column in zip(keys, columns, strict=True):
            kind = self._kind(key, column)
            if self.columns.get(key) != kind:
                changes[key] = kind
        return changes

    def _kind(self, key: str, column: list[Any]) -> str:
        types = set(map(type, column)) - {type(None)}
        current = self.columns.get(key)
        if not types:
            return current or "null"
        if types - {bool, int, float, str}:
            raise NotSimple(f"property {key[:40]!r} holds lists or objects")
        if bool in types or current == "boolean":
            if types != {bool} or current not in (None, "null", "boolean"):
                raise NotSimple(f"property {key[:40]!r} mixes booleans with other values")
            return "boolean"
        if str in types:
            kind = "text"
        elif float in types:
            kind = "numeric"
        else:
            numbers = [value for value in column if value is not None] if None in column else column
            kind = "integer" if _INT32[0] <= min(numbers) and max(numbers) <= _INT32[1] else "numeric"
        if current in (None, "null"):
            return kind
        return _WIDENING[max(_WIDENING.index(current), _WIDENING.index(kind))]

    def _apply(self, changes: dict[str, str]) -> None:
        for key in changes:
            if key not in self.columns:
                name = launder(key)
                too_long = len(name.encode()) > _MAX_IDENTIFIER_BYTES
                if not name or too_long or name in _RESERVED or name in self.names.values():
                    raise NotSimple(f"property name {key[:40]!r} needs GDAL's renaming")
                self.names[key] = name
        if not self.created:
            if self.result.geometry_type is None:
                raise NotSimple("the first features have no geometry")
            self.columns.update(changes)
            self._create()
            return
        statements = []
        for key, kind in changes.items():
            column = sql.Identifier(self.names[key])
            if key not in self.columns:
                statements.append(sql.SQL("ADD COLUMN {} {}").format(column, sql.SQL(_KIND_SQL[kind])))
                self.added_late = True
            else:
                target = sql.SQL(_KIND_SQL[kind])
                statements.append(sql.SQL("ALTER COLUMN {c} TYPE {t} USING {c}::{t}").format(c=column, t=target))
            self.columns[key] = kind
        self.conn.execute(sql.SQL("ALTER TABLE {} ").format(self.table) + sql.SQL(", ").join(statements))

    def _create(self) -> None:
        self._warmed()
        geometry = self.result.geometry_type
        # The key is there from the start, as in a plain CREATE TABLE + COPY: the server maintains it while
        # this process parses the next batch, instead of building it afterwards on the critical path.
        definitions = [sql.SQL("ogc_fid serial PRIMARY KEY")]
        definitions += [
            sql.SQL("{} {}").format(sql.Identifier(self.names[key]), sql.SQL(_KIND_SQL[kind]))
            for key, kind in self.columns.items()
        ]
        definitions.append(sql.SQL("wkb_geometry geometry({}, {})").format(sql.SQL(geometry), sql.SQL(str(SRID))))
        persistence = sql.SQL("TABLE" if self.logged else "UNLOGGED TABLE")
        self.conn.execute(sql.SQL("CREATE {} {} ({})").format(persistence, self.table, sql.SQL(", ").join(definitions)))
        self.created = True

    def _begin_copy(self) -> None:
        targets = [sql.Identifier(self.names[key]) for key in self.columns] + [sql.Identifier("wkb_geometry")]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(self.table, sql.SQL(", ").join(targets))
        self.copy_cm = self.conn.cursor().copy(statement)
        self.copy = self.copy_cm.__enter__()

    def _warmed(self) -> None:
        if self.warming is not None:
            self.warming.join()
            self.warming = None

    def abort(self, error: BaseException) -> None:
        """End an open COPY after ``error`` (psycopg tells the server the COPY failed)."""
        self._warmed()  # the connection is the caller's again only once the thread is done with it
        if self.copy_cm is not None:
            manager, self.copy_cm, self.copy = self.copy_cm, None, None
            try:
                manager.__exit__(type(error), error, error.__traceback__)
            except Exception:  # the original error is the one worth reporting
                pass

    def _end_copy(self) -> None:
        if self.copy_cm is None:
            return
        manager, self.copy_cm, self.copy = self.copy_cm, None, None
        try:
            manager.__exit__(None, None, None)
        except psycopg.errors.DataError as error:
            raise NotSimple(f"PostgreSQL refused a value: {type(error).__name__}") from None
