"""Generators of hostile input files: each returns the bytes a malicious or broken upload would have.

Nothing is shipped: every file is built here, small on disk, and some unpack or expand to far more.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from typing import Any

PASSWD_MARKER = "root:x:0:0"
"""A line of /etc/passwd: must never reach a layer table."""


def feature(geometry: dict[str, Any] | None, **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def square(x: float, y: float, size: float = 1.0) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


VALID = collection(feature(square(10, 10), name="ok"))


def zipped(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    return buffer.getvalue()


def zip_slip() -> bytes:
    """Members whose names climb out of the target folder or are absolute (Windows and POSIX)."""
    return zipped(
        {
            "../../../../tmp/hdxrq-zip-slip.geojson": VALID,
            "/tmp/hdxrq-zip-slip-abs.geojson": VALID,
            "..\\..\\hdxrq-zip-slip-win.geojson": VALID,
            "C:/Windows/hdxrq-zip-slip-drive.geojson": VALID,
        }
    )


def zip_bomb(unpacked_mb: int = 64) -> bytes:
    """One member of zeros: a few tens of KB that unpack to ``unpacked_mb`` MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("layer.geojson", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(unpacked_mb):
                member.write(block)
    return buffer.getvalue()


def many_members(count: int) -> bytes:
    """More members than the archive limit allows (each tiny)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for number in range(count):
            zf.writestr(f"f/{number}.txt", b"x")
    return buffer.getvalue()


def nested_zips(depth: int) -> bytes:
    """A GeoJSON inside ``depth`` zips inside each other."""
    content, name = VALID, "layer.geojson"
    for level in range(depth):
        content, name = zipped({name: content}), f"level{level}.zip"
    return content


def zip_with_symlinks() -> bytes:
    """Members flagged as symbolic links (to /etc/passwd and to a folder outside), plus a decoy."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, target in (("layer.geojson", "/etc/passwd"), ("data/escape", "../../../../etc")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def kmz_bomb(unpacked_mb: int = 64) -> bytes:
    """A KMZ (a zip) whose doc.kml is a small header followed by megabytes of spaces."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("doc.kml", "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>')
            block = b" " * (1024 * 1024)
            for _ in range(unpacked_mb):
                member.write(block)
            member.write(b"</Document></kml>")
    return buffer.getvalue()


def kml_external_entity() -> bytes:
    """XXE: a KML whose placemark name is the content of /etc/passwd if the parser resolves entities."""
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE kml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark><name>&xxe;</name>'
        b"<Point><coordinates>10,10</coordinates></Point></Placemark></Document></kml>"
    )


def kml_billion_laughs() -> bytes:
    """Exponential entity expansion (10 levels of 10): gigabytes if a parser expands it naively."""
    entities = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10)]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE kml [' + "".join(entities) + "]>\n"
        '<kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark><name>&l9;</name>'
        "<Point><coordinates>10,10</coordinates></Point></Placemark></Document></kml>"
    ).encode()


def huge_feature(vertices: int = 200_000, text_mb: int = 2) -> bytes:
    """One polygon with ``vertices`` vertices and a multi-megabyte text attribute."""
    ring = [[20 + 5 * _cos(i / vertices), 20 + 5 * _sin(i / vertices)] for i in range(vertices)]
    ring.append(ring[0])
    return collection(feature({"type": "Polygon", "coordinates": [ring]}, blob="x" * (text_mb * 1024 * 1024)))


def _cos(turn: float) -> float:
    import math

    return math.cos(2 * math.pi * turn)


def _sin(turn: float) -> float:
    import math

    return math.sin(2 * math.pi * turn)


def invalid_geometries() -> bytes:
    """Self-intersections, unclosed and degenerate rings, nulls, empties, NaN-free junk, out-of-range points."""
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    unclosed = {"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 6], [5, 6]]]}
    degenerate = {"type": "Polygon", "coordinates": [[[7, 7], [7, 7], [7, 7], [7, 7]]]}
    empty = {"type": "MultiPolygon", "coordinates": []}
    spike = {"type": "LineString", "coordinates": [[1, 1]]}
    outside = {"type": "Point", "coordinates": [500, -300]}
    return collection(
        feature(bowtie, kind="bowtie"),
        feature(unclosed, kind="unclosed"),
        feature(degenerate, kind="degenerate"),
        feature(empty, kind="empty"),
        feature(spike, kind="one-point line"),
        feature(None, kind="null"),
        feature(outside, kind="out of range"),
        feature(square(30, 30), kind="fine"),
    )


def broken_encoding() -> bytes:
    """GeoJSON whose text is neither valid UTF-8 nor declared: latin-1 bytes and stray continuation bytes."""
    body = collection(feature(square(40, 40), name="PLACEHOLDER"))
    return body.replace(b"PLACEHOLDER", b"Caf\xe9 \x80\x81 S\xe3o Tom\xe9 \xff\xfe")


def truncated_json() -> bytes:
    return collection(*(feature(square(i, i), n=i) for i in range(20)))[:-37]


def deep_json(depth: int = 100_000) -> bytes:
    """Nesting deep enough to overflow a recursive parser."""
    return b'{"type": "FeatureCollection", "features": [' + b"[" * depth + b"]" * depth + b"]}"


def corrupt_geopackage() -> bytes:
    return b"SQLite format 3\x00" + b"\x10\x00\x01\x01" + bytes(range(256)) * 64


def utf16_geojson() -> bytes:
    return b"\xff\xfe" + VALID.decode().encode("utf-16-le")
