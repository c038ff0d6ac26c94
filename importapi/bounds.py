"""The bounds a layer's coordinates keep (±180/±90), and the rounding noise forgiven at their edge.

Real files touch the bounds with noise: Natural Earth's countries shapefile has Russia at
x = 180.00000000000006 in the file itself, and a reprojection can land a vertex a few units in the last
place past ±180. A feature whose coordinates all lie within :data:`TOLERANCE` of the bounds is kept, its
coordinates past them clamped onto them; a feature with a coordinate further out is left out and counted.
Both import routes apply this rule: the GeoJSON fast path while encoding (``ewkb``), the ogr2ogr route on
the staging table (``layers``), with :func:`clamp_wkb` for the few features that need it.
"""

from __future__ import annotations

import struct

import numpy as np

MAX_X = 180.0
MAX_Y = 90.0
TOLERANCE = 1e-6
"""Degrees (about 11 cm at the equator): far above the noise of doubles near 180 (about 3e-14) and of
projected coordinates rounded to the millimetre (about 1e-8), far below anything a map can show."""
LIMIT_X = MAX_X + TOLERANCE
LIMIT_Y = MAX_Y + TOLERANCE
"""A coordinate past these (in absolute value) is really outside."""

_POINT_LISTS = {2, 8}  # LineString, CircularString: a count, then positions
_RING_LISTS = {3, 17}  # Polygon, Triangle: a count of rings, each a count then positions
_COLLECTIONS = {4, 5, 6, 7, 9, 10, 11, 12, 15, 16}  # a count, then whole geometries
_DIMENSIONS = {0: 2, 1: 3, 2: 3, 3: 4}  # ISO type // 1000: XY, XYZ, XYM, XYZM


def clamp_wkb(wkb: bytes) -> bytes:
    """``wkb`` (ISO WKB, as PostGIS's ``ST_AsBinary`` writes it) with every X clamped to ±180, Y to ±90.

    Only coordinates past the bounds change. Raises ValueError on WKB it cannot walk.
    """
    buffer = bytearray(wkb)
    try:
        end = _clamp_geometry(buffer, 0)
    except (struct.error, KeyError, IndexError) as error:
        raise ValueError(f"unreadable WKB: {error}") from None
    if end != len(buffer):
        raise ValueError("trailing bytes after the geometry")
    return bytes(buffer)


def _clamp_geometry(buffer: bytearray, position: int) -> int:
    """Clamp the geometry starting at ``position``; where it ends."""
    order = "<" if buffer[position] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", buffer, position + 1)
    kind, dimensions = code % 1000, _DIMENSIONS[code // 1000]
    position += 5
    if kind == 1:
        return _clamp_positions(buffer, position, 1, dimensions, order)
    (count,) = struct.unpack_from(order + "I", buffer, position)
    position += 4
    if kind in _POINT_LISTS:
        return _clamp_positions(buffer, position, count, dimensions, order)
    if kind in _RING_LISTS:
        for _ in range(count):
            (points,) = struct.unpack_from(order + "I", buffer, position)
            position = _clamp_positions(buffer, position + 4, points, dimensions, order)
        return position
    if kind in _COLLECTIONS:
        for _ in range(count):
            position = _clamp_geometry(buffer, position)
        return position
    raise KeyError(f"WKB type {code}")


def _clamp_positions(buffer: bytearray, position: int, count: int, dimensions: int, order: str) -> int:
    size = count * dimensions * 8
    if position + size > len(buffer):
        raise IndexError("positions past the end")
    values = np.frombuffer(buffer, dtype=order + "f8", count=count * dimensions, offset=position)
    positions = values.reshape(count, dimensions)  # a view: clipping writes into the buffer
    np.clip(positions[:, 0], -MAX_X, MAX_X, out=positions[:, 0])
    np.clip(positions[:, 1], -MAX_Y, MAX_Y, out=positions[:, 1])
    return position + size
