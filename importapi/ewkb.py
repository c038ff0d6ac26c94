"""The geometry column of the GeoJSON fast path: features' geometries to hex EWKB, in worker processes.

Given a batch of a file as a byte range (whole features, with the commas between them), :func:`encode`
decodes the features' geometries and gives each as multi-type EWKB with SRID 4326 (the types
``-nlt PROMOTE_TO_MULTI`` gives, XY only, like ``-dim XY``); a feature with a coordinate outside
±180/±90 is left out and its index reported. Anything the fast path does not do raises
:class:`NotSimple`: mixed geometry families, GeometryCollections, empty geometries, unusual coordinates.

Decoding the coordinates and packing them is most of the load's Python time (a list per position, a
float per number), while the properties and the ``COPY`` are not. :class:`Encoders` therefore runs
:func:`encode` in forked worker processes, one batch each in turn, while the importing process decodes the
next batches' properties and feeds ``COPY``; with ``workers=0`` it runs in the importing process.
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import sys
from array import array
from collections import deque
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec
import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence

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
_LINE_HEAD = struct.Struct("<BI")
_COUNT = struct.Struct("<I")
_POINT = struct.Struct("<BIdd")
_MULTIPOINT_EWKB = _EWKB_SRID_FLAG | 4
_FRAME = struct.Struct("<I")
_REQUEST = struct.Struct("<QQ")


class NotSimple(Exception):
    """The file needs GDAL's general reader; the message says why (for the log)."""


class GeometryBatch(msgspec.Struct, tag="batch"):
    """The geometry column of one batch."""

    count: int
    """Features in the batch."""
    family: str | None
    """The batch's geometry family (MultiPoint, MultiLineString, MultiPolygon); None if it has no geometry."""
    geometries: list[str]
    """Hex EWKB, or :data:`NULL`, of each feature that is not left out."""
    removed: list[int]
    """Indexes of the features left out for coordinates outside ±180/±90."""


class _Failure(msgspec.Struct, tag="failure"):
    reason: str


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
    """Hex EWKB of the multi geometry, or None when a coordinate is outside ±180/±90."""
    if target == "MultiPoint" and not is_multi:
        x, y = coordinates[0], coordinates[1]
        if not (-180 <= x <= 180 and -90 <= y <= 90):
            return None
        return _ONE_POINT.pack(1, _MULTIPOINT_EWKB, SRID, 1, 1, 1, x, y).hex()
    parts = coordinates if is_multi else [coordinates]
    if not parts:
        raise ValueError("empty geometry")
    chunks = [_HEAD.pack(1, _EWKB_SRID_FLAG | _WKB_TYPES[target], SRID, len(parts))]
    inside = True
    for part in parts:
        if target == "MultiPoint":
            x, y = part[0], part[1]
            inside = inside and -180 <= x <= 180 and -90 <= y <= 90
            chunks.append(_POINT.pack(1, 1, x, y))
        elif target == "MultiLineString":
            chunks.append(_LINE_HEAD.pack(1, 2))
            inside = _pack_ring(part, chunks) and inside
        else:
            if not part:
                raise ValueError("empty polygon")
            chunks.append(_PART_HEAD.pack(1, 3, len(part)))
            for ring in part:
                inside = _pack_ring(ring, chunks) and inside
    return b"".join(chunks).hex() if inside else None


def _pack_ring(points: Sequence[Any], chunks: list[bytes]) -> bool:
    """Append a point count and the XY doubles; whether every point is inside ±180/±90."""
    if not points:
        raise ValueError("empty ring")
    flat = list(chain.from_iterable(points))
    if len(flat) != 2 * len(points):  # Z or M values: keep XY only (-dim XY)
        flat = [value for point in points for value in (point[0], point[1])]
    xs, ys = flat[0::2], flat[1::2]
    chunks.append(_COUNT.pack(len(points)))
    doubles = array("d", flat)
    if sys.byteorder != "little":  # WKB byte-order flag 1 (little endian) is written for every part
        doubles.byteswap()
    chunks.append(doubles.tobytes())
    return min(xs) >= -180 and max(xs) <= 180 and min(ys) >= -90 and max(ys) <= 90


# --- worker processes ------------------------------------------------------------------------------------


def _read_range(handle: BinaryIO, start: int, end: int) -> bytes:
    return b"[" + os.pread(handle.fileno(), end - start, start) + b"]"


class Encoders:
    """:func:`encode` for batches of ``path``, in ``workers`` forked processes taking batches in turn.

    :meth:`submit` a batch, then take the results in the same order with :meth:`result`. Use as a context
    manager, entered before the process starts threads of its own (they are forked): on leaving, the
    workers are stopped and reaped. A worker touches nothing of the parent's but the file (no database
    connection, no logging); one whose parent is gone finds its pipe closed and exits.
    """

    def __init__(self, path: Path, workers: int) -> None:
        self.path = path
        self.count = workers
        self._workers: list[_Worker] = []
        self._pending: deque[_Worker | GeometryBatch | NotSimple] = deque()
        self._next = 0

    def __enter__(self) -> Encoders:
        try:
            self._workers = [_Worker.start(self.path) for _ in range(self.count)]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    @property
    def ahead(self) -> int:
        """How many batches to submit before taking a result, so that no worker waits."""
        return self.count

    def submit(self, start: int, end: int, text: bytes) -> None:
        """Encode the features at bytes ``start:end`` of the file; ``text`` is them as a JSON array.

        Without workers ``text`` is encoded here; a worker reads the range from the file itself.
        """
        if not self._workers:
            try:
                self._pending.append(encode(text))
            except NotSimple as reason:
                self._pending.append(reason)
            return
        worker = self._workers[self._next % len(self._workers)]
        self._next += 1
        worker.send(start, end)
        self._pending.append(worker)

    def result(self) -> GeometryBatch:
        """The oldest submitted batch's column; raises :class:`NotSimple` as :func:`encode` does."""
        item = self._pending.popleft()
        if isinstance(item, _Worker):
            item = item.receive()
        if isinstance(item, NotSimple):
            raise item
        return item


class _Worker:
    """One forked process answering byte ranges with encoded columns (length-prefixed msgpack frames)."""

    _decoder = msgspec.msgpack.Decoder(GeometryBatch | _Failure)

    def __init__(self, pid: int, requests: BinaryIO, answers: BinaryIO) -> None:
        self.pid = pid
        self.requests = requests
        self.answers = answers

    @classmethod
    def start(cls, path: Path) -> _Worker:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(from_parent)
            os.close(to_parent)
            _serve(path, to_child, from_child)
        os.close(to_child)
        os.close(from_child)
        return cls(pid, os.fdopen(from_parent, "wb", buffering=0), os.fdopen(to_parent, "rb", buffering=1 << 20))

    def send(self, start: int, end: int) -> None:
        try:
            self.requests.write(_REQUEST.pack(start, end))
        except BrokenPipeError:  # it died: receive() reports it
            pass

    def receive(self) -> GeometryBatch | NotSimple:
        head = self.answers.read(_FRAME.size)
        payload = self.answers.read(_FRAME.unpack(head)[0]) if len(head) == _FRAME.size else b""
        if not payload:
            return NotSimple("a geometry worker process ended early")
        answer = self._decoder.decode(payload)
        return NotSimple(answer.reason) if isinstance(answer, _Failure) else answer

    def stop(self) -> None:
        for pipe in (self.requests, self.answers):
            pipe.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def _serve(path: Path, requests_fd: int, answers_fd: int) -> None:
    """A worker's whole life: answer requests until the pipe closes, then exit without the parent's cleanup."""
    code = 0
    try:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)  # the job's handlers belong to the job's process
        gc.disable()  # as in the parent's load: nothing the decoders build is in a cycle
        encoder = msgspec.msgpack.Encoder()
        with (
            os.fdopen(requests_fd, "rb", buffering=0) as requests,
            os.fdopen(answers_fd, "wb", buffering=1 << 20) as answers,
            path.open("rb") as handle,
        ):
            while len(request := requests.read(_REQUEST.size)) == _REQUEST.size:
                try:
                    answer: GeometryBatch | _Failure = encode(_read_range(handle, *_REQUEST.unpack(request)))
                except NotSimple as reason:
                    answer = _Failure(str(reason))
                except Exception as error:  # a bug here must not cost the import: GDAL reads the file instead
                    answer = _Failure(f"the geometry worker failed: {type(error).__name__}")
                payload = encoder.encode(answer)
                answers.write(_FRAME.pack(len(payload)))
                answers.write(payload)
                answers.flush()
    except BaseException:  # the parent went away (broken pipe) or a signal: nobody to report to
        code = 1
    finally:
        os._exit(code)
