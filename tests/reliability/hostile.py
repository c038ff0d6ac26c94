"""Generators of hostile input files: each returns the bytes a malicious or broken upload would have.

Nothing is shipped: every file is built here, small on disk, and some unpack or expand to far more.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path
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


# --- archives that lie about themselves ---

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")


def _local_header(name: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data)
    return _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0) + name + data


def _central_record(name: bytes, data: bytes, offset: int) -> bytes:
    crc = zlib.crc32(data)
    fields = (b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0, 0, 0, 0, 0, offset)
    return _CENTRAL.pack(*fields) + name


def _end_records(count: int, declared: int, cd_size: int, cd_offset: int) -> bytes:
    """End-of-central-directory records (zip64 ones first when the numbers need them), declaring
    ``declared`` entries."""
    if declared <= 0xFFFF and count <= 0xFFFF:
        return _EOCD.pack(b"PK\x05\x06", 0, 0, declared, declared, cd_size, cd_offset, 0)
    zip64_at = cd_offset + cd_size
    zip64 = _ZIP64_EOCD.pack(b"PK\x06\x06", _ZIP64_EOCD.size - 12, 45, 45, 0, 0, declared, declared, cd_size, cd_offset)
    locator = _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, zip64_at, 1)
    eocd = _EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return zip64 + locator + eocd


def many_entries_zip(path: Path, count: int, *, declared: int | None = None) -> Path:
    """A zip whose central directory lists ``count`` entries (one-byte names, all pointing at one tiny
    member), written to ``path`` without holding it in memory; its end record declares ``declared``
    entries (``count`` when not given: an honest count; fewer: a liar)."""
    member = _local_header(b"a", b"x")
    record = _central_record(b"a", b"x", 0)
    with path.open("wb") as out:
        out.write(member)
        block = record * 10_000
        written = 0
        while written + 10_000 <= count:
            out.write(block)
            written += 10_000
        out.write(record * (count - written))
        out.write(_end_records(count, count if declared is None else declared, len(record) * count, len(member)))
    return path


def million_entries_zip(path: Path) -> Path:
    """A zip with a million entries (about 47 MB, built in a fraction of a second)."""
    return many_entries_zip(path, 1_000_000)


def overlapping_zip(copies: int = 2) -> bytes:
    """``copies`` entries whose data are the same bytes: the central directory points each at one member
    (the trick of overlapping zip bombs, where one compressed stream is counted many times; Python's
    zipfile reads every copy)."""
    member = _local_header(b"layer.geojson", VALID)
    records = _central_record(b"layer.geojson", VALID, 0) * copies
    return member + records + _end_records(copies, copies, len(records), len(member))


def nested_over_budget(megabytes: float) -> bytes:
    """A zip holding a KMZ holding a KML, each level ``megabytes`` MB (incompressible, stored): either
    level alone fits an unpack budget of ``1.5 * megabytes``, the two together do not."""
    size = int(megabytes * 1024 * 1024)
    filler = os.urandom(size // 2).hex().encode()[:size]
    kml = b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document><!-- '
    kml += filler + b" --><Placemark><Point><coordinates>10,10</coordinates></Point></Placemark></Document></kml>"
    kmz = zipped({"doc.kml": kml}, compression=zipfile.ZIP_STORED)
    return zipped({"layer.kmz": kmz}, compression=zipfile.ZIP_STORED)


def zip_with_prefix() -> bytes:
    """A valid zip with bytes before its first entry (as self-extracting archives have)."""
    return b"#!/bin/sh\necho hello\n" + zipped({"layer.geojson": VALID})


# --- files that name other files and URLs ---


@dataclasses.dataclass(frozen=True)
class Bait:
    """What hostile files point at: a loopback server that must hear nothing and a file outside the job
    folder, holding ``secret``, that must never reach a layer."""

    server_url: str
    outside: Path
    secret: str

    @classmethod
    def lay(cls, folder: Path, server_url: str, secret: str) -> Bait:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rows.csv").write_text(f'wkt,leak\n"POINT (10 10)",{secret}\n')
        (folder / "rows.gml").write_text(_gml(f'<ogr:leak gml:id="x">{secret}</ogr:leak>'))
        return cls(server_url=server_url, outside=folder, secret=secret)


def vrt(bait: Bait) -> bytes:
    """A GDAL VRT whose layers come from the outside file, the bait server (/vsicurl/) and /proc."""
    layers = [("rows", str(bait.outside / "rows.csv")), ("remote", f"/vsicurl/{bait.server_url}/rows.csv")]
    layers.append(("environ", "CSV:/proc/self/environ"))
    body = "".join(
        f'<OGRVRTLayer name="{name}"><SrcDataSource>{source}</SrcDataSource><SrcLayer>{Path(source).stem}</SrcLayer>'
        '<GeometryField encoding="WKT" field="wkt"/></OGRVRTLayer>'
        for name, source in layers
    )
    return f"<OGRVRTDataSource>{body}</OGRVRTDataSource>".encode()


def vrt_in_zip_as_shapefile(bait: Bait) -> bytes:
    return zipped({"layer.shp": vrt(bait), "layer.dbf": b"\x03" + b"\0" * 31, "layer.shx": b"\0" * 100})


def _gml(members: str, schema: str = "") -> str:
    return (
        '<?xml version="1.0"?><ogr:FeatureCollection xmlns:ogr="http://ogr.maptools.org/" '
        'xmlns:gml="http://www.opengis.net/gml" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"{schema}>'
        '<gml:featureMember><ogr:layer gml:id="a"><ogr:geometryProperty><gml:Point><gml:coordinates>10,10'
        f"</gml:coordinates></gml:Point></ogr:geometryProperty>{members}</ogr:layer></gml:featureMember>"
        "</ogr:FeatureCollection>"
    )


def gml_xlink_to_file(bait: Bait) -> bytes:
    """GML whose feature's property is an xlink to a file outside (resolved by GDAL on request)."""
    return _gml(f'<ogr:leak xlink:href="file://{bait.outside}/rows.gml#x"/>').encode()


def gml_xlink_to_url(bait: Bait) -> bytes:
    """GML with an xlink and a schema location on the bait server."""
    schema = f' xsi:schemaLocation="http://ogr.maptools.org/ {bait.server_url}/schema.xsd"'
    return _gml(f'<ogr:leak xlink:href="{bait.server_url}/rows.gml#x"/>', schema).encode()


def geojson_crs_link(bait: Bait) -> bytes:
    """GeoJSON whose CRS is a link: GDAL fetches linked CRS definitions over HTTP."""
    body = json.loads(VALID)
    body["crs"] = {"type": "link", "properties": {"href": f"{bait.server_url}/crs.wkt", "type": "ogcwkt"}}
    return json.dumps(body).encode()


LAYER_NAMED_LIKE_AN_OPTION = "-sql SELECT * FROM pg_authid"


def layer_named_like_an_option(folder: Path) -> bytes:
    """A GeoPackage of two layers; the larger, the one imported, is named like an ogr2ogr option."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "options.gpkg"
    target.unlink(missing_ok=True)
    for name, count in ((LAYER_NAMED_LIKE_AN_OPTION, 3), ("small", 1)):
        source = folder / f"{count}.geojson"
        source.write_bytes(collection(*(feature(square(10 + i, 10), n=i) for i in range(count))))
        update = ["-update"] if target.exists() else []
        subprocess.run(
            [
                "ogr2ogr",
                *update,
                "--config",
                "GPKG_NAME_CHECK",
                "NO",
                "-f",
                "GPKG",
                "-nln",
                name,
                str(target),
                str(source),
            ],
            check=True,
            capture_output=True,
        )
    return target.read_bytes()
