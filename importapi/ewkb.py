"""The geometry column of the GeoJSON fast path: features' geometries as multi-type hex EWKB, SRID 4326.

The types are those ``-nlt PROMOTE_TO_MULTI`` gives, XY only (like ``-dim XY``); a feature with a
coordinate outside ±180/±90 is left out and its index reported, unless all its coordinates lie within the
rounding tolerance of the bounds (``bounds``): those past the bounds are then clamped onto them. Two routes
give the same bytes:

* :func:`encode_raw`, for the usual batch. geojson's typed decoder leaves each geometry's coordinates as
  JSON text; the batch's coordinates are joined into one JSON text whose *skeleton* (the text without its
  numbers and spaces) must match the one shape the batch's geometry family allows, simdjson reads every
  number of it into one array of doubles, and numpy writes all the batch's EWKB headers, counts and
  coordinates in a few passes. Decoding a float object per number and packing ring by ring was most of
  an import's Python time; here no Python object is made per coordinate, nor per ring.
* :func:`encode`, for any other batch (Z values, empty parts, mixed families, geometry collections,
  coordinates that are not numbers...): decodes the geometries into typed classes and packs them one by
  one, or raises :class:`NotSimple` with the reason the file needs GDAL.
"""

from __future__ import annotations

import functools
import re
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import msgspec
import numpy as np
import orjson
import simdjson

from .bounds import LIMIT_X, LIMIT_Y, MAX_X, MAX_Y

SRID = 4326
NULL = "\\N"
"""COPY's NULL: the geometry column of a feature without a geometry."""
_EWKB_SRID_FLAG = 0x20000000
_FAMILIES = {
    "Point": ("MultiPoint", False),
    "MultiPoint": ("MultiPoint", True),
    "LineString": ("MultiLineString", False),
    "MultiLineString": ("MultiLineString", True),
    "Polygon": ("MultiPolygon", False),
    "MultiPolygon": ("MultiPolygon", True),
}
_WKB_TYPES = {"MultiPoint": 4, "MultiLineString": 5, "MultiPolygon": 6}
_ONE_POINT = struct.Struct("<BIIIBIdd")
_HEAD = struct.Struct("<BIII")
_PART_HEAD = struct.Struct("<BII")
_PART_PREFIX = struct.Struct("<BI")  # byte order, type
_COUNT = struct.Struct("<I")
_POINT = struct.Struct("<BIdd")
_MULTIPOINT_EWKB = _EWKB_SRID_FLAG | 4


class NotSimple(Exception):
    """The file needs GDAL's general reader; the message says why (for the log)."""


class GeometryBatch(msgspec.Struct):
    """The geometry column of one batch."""

    count: int
    """Features in the batch."""
    family: str | None
    """The batch's geometry family (MultiPoint, MultiLineString, MultiPolygon); None if it has no geometry."""
    geometries: list[str]
    """Hex EWKB, or :data:`NULL`, of each feature that is not left out."""
    removed: list[int]
    """Indexes of the features left out for coordinates outside ±180/±90 (beyond the tolerance)."""


# --- decoding --------------------------------------------------------------------------------------------
# The usual batch is decoded by msgspec straight into these classes (properties skipped): the structure is
# checked in C, with fewer objects than general JSON decoding. A batch they do not describe (a
# GeometryCollection, a feature that is not an object...) fails validation and is decoded by orjson into
# plain objects; their geometries are then converted to the same classes one by one, so both routes
# accept and reject the same geometries.


class _Point(msgspec.Struct, tag="Point", tag_field="type"):
    coordinates: list[float]


class _MultiPoint(msgspec.Struct, tag="MultiPoint", tag_field="type"):
    coordinates: list[list[float]]


class _LineString(msgspec.Struct, tag="LineString", tag_field="type"):
    coordinates: list[list[float]]


class _MultiLineString(msgspec.Struct, tag="MultiLineString", tag_field="type"):
    coordinates: list[list[list[float]]]


class _Polygon(msgspec.Struct, tag="Polygon", tag_field="type"):
    coordinates: list[list[list[float]]]


class _MultiPolygon(msgspec.Struct, tag="MultiPolygon", tag_field="type"):
    coordinates: list[list[list[list[float]]]]


_Geometry = _Point | _MultiPoint | _LineString | _MultiLineString | _Polygon | _MultiPolygon
_TYPED_KINDS = {cls: cls.__struct_config__.tag for cls in _Geometry.__args__}


class _GeometryOnly(msgspec.Struct, tag="Feature", tag_field="type"):
    geometry: _Geometry | None = None


_GEOMETRIES = msgspec.json.Decoder(list[_GeometryOnly])


def encode(text: bytes) -> GeometryBatch:
    """The geometry column of the features in ``text`` (a JSON array of features)."""
    try:
        features: list[Any] = _GEOMETRIES.decode(text)
    except msgspec.ValidationError:  # valid JSON of another shape: judged by the general checks
        try:
            features = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise NotSimple("the features are not plain JSON") from None
    except msgspec.DecodeError:
        raise NotSimple("the features are not valid JSON") from None
    column = _Column()
    if features and isinstance(features[0], _GeometryOnly):
        column.add_typed(features)
    else:
        column.add_plain(features)
    return GeometryBatch(len(features), column.family, column.geometries, column.removed)


class _Column:
    """Geometries of one batch as they are encoded; ``family`` is fixed by the first."""

    def __init__(self) -> None:
        self.family: str | None = None
        self.geometries: list[str] = []
        self.removed: list[int] = []

    def add_plain(self, features: list[Any]) -> None:
        """Features orjson decoded: each geometry must convert to the typed classes, as msgspec checks them."""
        for index, feature in enumerate(features):
            if type(feature) is not dict:
                raise NotSimple("an element of features is not a Feature")
            geometry = feature.get("geometry")
            if geometry is None:
                self.geometries.append(NULL)
                continue
            try:
                typed = msgspec.convert(geometry, _Geometry)
            except msgspec.ValidationError:
                kind = geometry.get("type") if isinstance(geometry, dict) else None
                raise NotSimple(f"a geometry of type {str(kind)[:40]!r} or with unusual coordinates") from None
            self._add(index, typed)

    def add_typed(self, features: list[_GeometryOnly]) -> None:
        for index, feature in enumerate(features):
            if feature.geometry is None:
                self.geometries.append(NULL)
            else:
                self._add(index, feature.geometry)

    def _add(self, index: int, geometry: Any) -> None:
        kind = _TYPED_KINDS[type(geometry)]
        target, is_multi = _FAMILIES[kind]
        if target != self.family:
            self._set_family(target, kind)
        try:
            encoded = _encode(target, is_multi, geometry.coordinates)
        except (IndexError, ValueError, struct.error):
            raise NotSimple(f"a {kind} with unusual coordinates") from None
        self._append(index, encoded)

    def _append(self, index: int, encoded: str | None) -> None:
        if encoded is None:
            self.removed.append(index)
        else:
            self.geometries.append(encoded)

    def _set_family(self, target: str, kind: str) -> None:
        if self.family is not None:
            raise NotSimple(f"mixed geometry types ({self.family}, {kind})")
        self.family = target


def _encode(target: str, is_multi: bool, coordinates: Any) -> str | None:
    """Hex EWKB of the multi geometry, or None when a coordinate is outside ±180/±90 (beyond the tolerance)."""
    if target == "MultiPoint" and not is_multi:
        x, y = coordinates[0], coordinates[1]
        if not (-LIMIT_X <= x <= LIMIT_X and -LIMIT_Y <= y <= LIMIT_Y):
            return None
        return _ONE_POINT.pack(1, _MULTIPOINT_EWKB, SRID, 1, 1, 1, _clamp(x, MAX_X), _clamp(y, MAX_Y)).hex()
    parts = coordinates if is_multi else [coordinates]
    if not parts:
        raise ValueError("empty geometry")
    chunks = [_HEAD.pack(1, _EWKB_SRID_FLAG | _WKB_TYPES[target], SRID, len(parts))]
    inside = True
    for part in parts:
        if target == "MultiPoint":
            x, y = part[0], part[1]
            inside = inside and -LIMIT_X <= x <= LIMIT_X and -LIMIT_Y <= y <= LIMIT_Y
            chunks.append(_POINT.pack(1, 1, _clamp(x, MAX_X), _clamp(y, MAX_Y)))
        elif target == "MultiLineString":
            chunks.append(_PART_PREFIX.pack(1, 2))
            inside = _pack_ring(part, chunks) and inside
        else:
            if not part:
                raise ValueError("empty polygon")
            chunks.append(_PART_HEAD.pack(1, 3, len(part)))
            for ring in part:
                inside = _pack_ring(ring, chunks) and inside
    return b"".join(chunks).hex() if inside else None


def _pack_ring(points: Sequence[Any], chunks: list[bytes]) -> bool:
    """Append a point count and the XY doubles (clamped onto ±180/±90); whether every point is within the
    tolerance of the bounds."""
    if not points:
        raise ValueError("empty ring")
    flat = list(chain.from_iterable(points))
    if len(flat) != 2 * len(points):  # Z or M values: keep XY only (-dim XY)
        flat = [value for point in points for value in (point[0], point[1])]
    xs, ys = flat[0::2], flat[1::2]
    (x_low, x_high), (y_low, y_high) = (min(xs), max(xs)), (min(ys), max(ys))
    if x_low < -MAX_X or x_high > MAX_X or y_low < -MAX_Y or y_high > MAX_Y:
        flat[0::2] = [_clamp(x, MAX_X) for x in xs]
        flat[1::2] = [_clamp(y, MAX_Y) for y in ys]
    chunks.append(_COUNT.pack(len(points)))
    doubles = array("d", flat)
    if sys.byteorder != "little":  # WKB byte-order flag 1 (little endian) is written for every part
        doubles.byteswap()
    chunks.append(doubles.tobytes())
    return x_low >= -LIMIT_X and x_high <= LIMIT_X and y_low >= -LIMIT_Y and y_high <= LIMIT_Y


def _clamp(value: float, limit: float) -> float:
    """``value`` onto ``±limit``; an inside value unchanged (an integer stays one, as the raw route has it)."""
    if value > limit:
        return limit
    return -limit if value < -limit else value


# --- the raw route ----------------------------------------------------------------------------------------


class RawGeometry(msgspec.Struct, gc=False):
    """A geometry as geojson's typed decoder reads it: its type, and its coordinates as JSON text."""

    type: Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
    coordinates: msgspec.Raw


@dataclass(frozen=True)
class _Layout:
    """How one family's EWKB is laid out: a record per array, outermost first, then one per position.

    Each array's record is its prefix and the count of its elements (uint32); a position's record is its
    prefix and its two doubles.
    """

    array_prefixes: tuple[bytes, ...]
    """The feature's (byte order, type, SRID), then a part's (byte order, type), a ring's nothing."""
    position_prefix: bytes
    """Before each position's doubles: a point's (byte order, type) in a multipoint, else nothing."""

    @functools.cached_property
    def shapes(self) -> dict[bool, re.Pattern[bytes]]:
        """single -> the skeleton a batch of this family must have (a position being ``P``)."""
        shape = rb"P"
        nested = []
        for _ in range(len(self.array_prefixes) + 1):
            shape = rb"\[" + shape + rb"(?:," + shape + rb")*+\]"
            nested.append(re.compile(shape))
        return {True: nested[-2], False: nested[-1]}


_FEATURE_PREFIX = struct.Struct("<BII")  # byte order, type with the SRID flag, SRID


def _feature_prefix(family: str) -> bytes:
    return _FEATURE_PREFIX.pack(1, _EWKB_SRID_FLAG | _WKB_TYPES[family], SRID)


_LAYOUTS = {
    "MultiPoint": _Layout((_feature_prefix("MultiPoint"),), position_prefix=_PART_PREFIX.pack(1, 1)),
    "MultiLineString": _Layout((_feature_prefix("MultiLineString"), _PART_PREFIX.pack(1, 2)), position_prefix=b""),
    "MultiPolygon": _Layout((_feature_prefix("MultiPolygon"), _PART_PREFIX.pack(1, 3), b""), position_prefix=b""),
}
_NUMBERS_AND_SPACES = b"0123456789.-+eE \t\n\r"
_OPEN, _CLOSE, _POSITION = b"[]P"
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_PIECE_BYTES = 4 << 20


@functools.cache
def _parser() -> simdjson.Parser:
    return simdjson.Parser()


def encode_raw(geometries: Sequence[RawGeometry | None]) -> GeometryBatch | None:
    """The geometry column of a batch whose geometries geojson's typed decoder read (None: no geometry).

    Returns None when the batch is not in the usual shape; :func:`encode` then reads it. Gives exactly
    the bytes :func:`encode` gives (tested on generated batches).
    """
    present = [geometry for geometry in geometries if geometry is not None]
    if not present:
        return GeometryBatch(len(geometries), None, [NULL] * len(geometries), [])
    joined = _join(present)
    if joined is None:
        return None
    family, single, text = joined
    layout = _LAYOUTS[family]
    skeleton = b"[" + text.translate(None, _NUMBERS_AND_SPACES).replace(b"[,]", b"P") + b"]"
    if layout.shapes[single].fullmatch(skeleton) is None:
        return None  # Z values, empty parts, one geometry nested deeper than its type says, a string...
    doubles = _doubles(text, 2 * skeleton.count(b"P"))
    if doubles is None:
        return None
    del joined, text  # the coordinates' text: the largest object here, no longer needed
    beyond = _clamp_onto_bounds(doubles)
    out, starts, sizes = _assemble(layout, single, skeleton, doubles)
    hexed = out.data.hex()
    ends = (2 * starts[1:]).tolist() + [len(hexed)]
    texts = [hexed[start:end] for start, end in zip((2 * starts).tolist(), ends, strict=True)]
    left_out = _owners(beyond, sizes)
    if len(present) == len(geometries) and not left_out:
        return GeometryBatch(len(geometries), family, texts, [])
    column, removed = [], []
    features = iter(enumerate(texts))
    for index, geometry in enumerate(geometries):
        if geometry is None:
            column.append(NULL)
            continue
        number, text_of_feature = next(features)
        if number in left_out:
            removed.append(index)
        else:
            column.append(text_of_feature)
    return GeometryBatch(len(geometries), family, column, removed)


def _join(geometries: list[RawGeometry]) -> tuple[str, bool, bytes] | None:
    """(family, whether all are single geometries, their coordinates joined by commas); None for a batch
    of several families (:func:`encode` reports it).

    A batch mixing single and multi geometries of one family has its single ones wrapped in brackets: a
    polygon's coordinates are then those of a multipolygon of one polygon.
    """
    kinds = {geometry.type for geometry in geometries}
    families = {_FAMILIES[kind][0] for kind in kinds}
    if len(families) != 1:
        return None
    multi = {_FAMILIES[kind][1] for kind in kinds}
    if len(multi) == 1:
        pieces: list[Any] = [geometry.coordinates for geometry in geometries]
    else:
        pieces = [
            geometry.coordinates if _FAMILIES[geometry.type][1] else b"[" + geometry.coordinates + b"]"
            for geometry in geometries
        ]
    return families.pop(), multi == {False}, b",".join(pieces)


def _clamp_onto_bounds(doubles: np.ndarray) -> np.ndarray | None:
    """Clamp the XY ``doubles`` onto ±180/±90 in place; the mask of positions that were beyond the
    tolerance (None when there are none)."""
    xs, ys = doubles[0::2], doubles[1::2]
    if xs.min() >= -MAX_X and xs.max() <= MAX_X and ys.min() >= -MAX_Y and ys.max() <= MAX_Y:
        return None
    beyond = (xs < -LIMIT_X) | (xs > LIMIT_X) | (ys < -LIMIT_Y) | (ys > LIMIT_Y)
    np.clip(xs, -MAX_X, MAX_X, out=xs)
    np.clip(ys, -MAX_Y, MAX_Y, out=ys)
    return beyond if beyond.any() else None


def _owners(positions: np.ndarray | None, sizes: np.ndarray) -> set[int]:
    """The features (numbers within the batch, of ``sizes`` positions each) owning a position of the mask."""
    if positions is None:
        return set()
    owners = np.repeat(np.arange(len(sizes)), sizes)
    return set(np.unique(owners[positions]).tolist())


def _doubles(text: bytes, count: int) -> np.ndarray | None:
    """The ``count`` numbers of ``text`` in order, as doubles; None when one is not a number simdjson reads.

    ``text`` passed the skeleton check: numbers, brackets, commas and spaces only. A piece of it cut at
    commas, its brackets blanked, is a flat list of numbers; pieces of at most :data:`_PIECE_BYTES` keep
    the parser's memory (several times its input) bounded whatever the size of one geometry.
    """
    doubles = np.empty(count, dtype=np.float64)
    filled = start = 0
    while start < len(text):
        end = len(text) if len(text) - start <= _PIECE_BYTES else text.rfind(b",", start, start + _PIECE_BYTES)
        if end <= start:
            return None  # a number longer than a piece
        try:
            numbers = _parse_numbers(b"[" + text[start:end].translate(_BRACKETS_TO_SPACES) + b"]")
        except (ValueError, TypeError, RuntimeError):  # not a number, past 64 bits or a double's range
            return None
        piece = np.frombuffer(numbers, dtype=np.float64)
        if filled + len(piece) > count:
            return None
        doubles[filled : filled + len(piece)] = piece
        filled += len(piece)
        start = end + 1
    return doubles if filled == count else None


def _parse_numbers(array_text: bytes) -> Any:
    document = _parser().parse(array_text)
    try:
        return document.as_buffer(of_type="d")
    finally:
        del document  # the parser refuses to parse again while a proxy of its document lives


def _assemble(
    layout: _Layout, single: bool, skeleton: bytes, doubles: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch's EWKB, where each feature starts in it, and how many positions each feature has.

    ``skeleton`` is the batch's checked skeleton (arrays and positions ``P``), ``doubles`` its numbers.
    The records are written in skeleton order: an opening bracket writes its array's record (for a single
    geometry the first part's bracket also writes the feature's record, with a count of one), a ``P`` its
    position's. The work is done on the brackets alone (a few per feature), then the coordinates are
    copied into the bytes the records leave free.
    """
    count = len(doubles) // 2  # positions: :func:`_doubles` read exactly two numbers for each ``P``
    position_bytes = len(layout.position_prefix) + 16
    if single and len(layout.array_prefixes) == 1:  # points: one fixed-size feature per position
        return _points(layout, doubles, count)

    chars = np.frombuffer(skeleton.replace(b",", b""), dtype=np.uint8)
    brackets = np.flatnonzero(chars != _POSITION)
    opening = chars[brackets] == _OPEN
    depth = np.cumsum(np.where(opening, 1, -1), dtype=np.int32) + ~opening  # of the array opened or closed
    before = brackets - np.arange(len(brackets))  # positions before each bracket
    last = len(layout.array_prefixes) - 1
    record_bytes = np.zeros(len(brackets), dtype=np.int64)
    records = []
    for level, prefix in enumerate(layout.array_prefixes):
        level_depth = max(2, level + (1 if single else 2))
        at = np.flatnonzero(opening & (depth == level_depth))
        if single and level == 0:
            counts = np.ones(len(at), dtype=np.int64)
        else:
            closing = np.flatnonzero(~opening & (depth == level_depth))
            if level == last:
                counts = before[closing] - before[at]
            else:
                children = np.cumsum(opening & (depth == level_depth + 1), dtype=np.int64)
                counts = children[closing] - children[at]
        block = np.empty((len(at), len(prefix) + 4), dtype=np.uint8)
        block[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        block[:, len(prefix) :] = counts.astype("<u4").view(np.uint8).reshape(-1, 4)
        records.append((at, record_bytes[at], block))
        record_bytes[at] += block.shape[1]

    headers_through = np.cumsum(record_bytes)
    starts = headers_through - record_bytes + before * position_bytes
    out = np.empty(int(headers_through[-1]) + count * position_bytes, dtype=np.uint8)
    is_record = np.zeros(len(out), dtype=bool)
    for at, offset, block in records:
        _scatter(out, is_record, starts[at] + offset, block)
    if layout.position_prefix:
        position_starts = np.repeat(headers_through[:-1], np.diff(before)) + np.arange(count) * position_bytes
        block = np.tile(np.frombuffer(layout.position_prefix, dtype=np.uint8), (count, 1))
        _scatter(out, is_record, position_starts, block)
    out[~is_record] = doubles.astype("<f8", copy=False).view(np.uint8)  # the bytes left, in order
    features = np.flatnonzero(opening & (depth == 2))
    feature_ends = np.flatnonzero(~opening & (depth == 2))
    return out, starts[features], before[feature_ends] - before[features]


def _points(layout: _Layout, doubles: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_assemble` for single points: each one a multipoint of one point, all the same size."""
    (feature_prefix,) = layout.array_prefixes
    heads = feature_prefix + _COUNT.pack(1) + layout.position_prefix
    records = np.empty((count, len(heads) + 16), dtype=np.uint8)
    records[:, : len(heads)] = np.frombuffer(heads, dtype=np.uint8)
    records[:, len(heads) :] = doubles.astype("<f8", copy=False).view(np.uint8).reshape(-1, 16)
    return records.reshape(-1), np.arange(count) * records.shape[1], np.ones(count, dtype=np.int64)


def _scatter(out: np.ndarray, is_record: np.ndarray, starts: np.ndarray, block: np.ndarray) -> None:
    """Write ``block``'s rows at ``starts`` in ``out`` and mark those bytes taken."""
    where = starts[:, None] + np.arange(block.shape[1])
    out[where] = block
    is_record[where] = True
