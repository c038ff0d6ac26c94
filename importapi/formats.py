"""The formats an import accepts, recognised by their first bytes, and the GDAL drivers allowed to open them.

A file's extension and its first bytes must agree before GDAL sees it: a GDAL VRT (XML that names other
files and URLs) renamed ``x.shp``, ``x.geojson`` or ``x.kml`` is refused here, and GDAL itself is then
only allowed the drivers of that one format (``importapi.ogr``). A file without a known extension (a
download named ``download``) is taken for what its bytes say, if that is an accepted format.

Accepted, and why only these: they are the formats CKAN's users upload for a map preview (CONTRACTS.md
§2.2), and none of them can make GDAL open another file or a URL:

* ESRI Shapefile (``.shp``, inside a zip with its ``.dbf``/``.shx``/``.prj``/``.cpg``);
* GeoPackage (``.gpkg``: SQLite, opened read-only without SQLite extensions);
* GeoJSON (``.geojson``, ``.json``);
* KML (``.kml``) and KMZ (``.kmz``, a zip holding a KML).

Everything else is refused, GML, GPX, CSV, VRT and the other formats GDAL knows included: several of
them name other files, schemas or URLs inside the file (VRT sources, GML ``xlink:href`` and
``xsi:schemaLocation``, CSV ``.csvt``/``.vrt`` companions), which a map preview must never follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsupportedFormat

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Format:
    """One accepted format."""

    kind: str
    label: str
    extensions: tuple[str, ...]
    drivers: tuple[str, ...]
    """The GDAL drivers allowed to open a file of this format (none: an archive, unpacked by us)."""


FORMATS = (
    Format("shp", "ESRI Shapefile", (".shp",), ("ESRI Shapefile",)),
    Format("gpkg", "GeoPackage", (".gpkg",), ("GPKG",)),
    Format("geojson", "GeoJSON", (".geojson", ".json"), ("GeoJSON",)),
    Format("kml", "KML", (".kml",), ("LIBKML", "KML")),
    Format("zip", "zip archive", (".zip", ".kmz"), ()),
)
"""In order of preference when an archive holds several (KMZ being a zip, it comes last)."""
BY_KIND = {fmt.kind: fmt for fmt in FORMATS}
BY_EXTENSION = {extension: fmt for fmt in FORMATS for extension in fmt.extensions}
SOURCE_RANKS = {".shp": 0, ".gpkg": 1, ".geojson": 2, ".json": 2, ".kml": 3, ".kmz": 4}
"""File extensions an archive's member can be imported from, in order of preference."""

_SHAPEFILE_MAGIC = b"\x00\x00\x27\x0a"  # file code 9994, big-endian
_XML_PROLOG = re.compile(rb"\s*(<\?xml[^>]*\?>|<!--.*?-->)", re.S)
_KML_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?kml[\s>/]")


def sniff(path: Path) -> str | None:
    """The accepted format the file's first bytes show (``zip``, ``gpkg``, ``shp``, ``geojson``, ``kml``)."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"SQLite format 3\x00"):
        return "gpkg"
    if head.startswith(_SHAPEFILE_MAGIC):
        return "shp"
    text = head.removeprefix(b"\xef\xbb\xbf")
    if text.lstrip(b" \t\r\n").startswith((b"{", b"[")):
        return "geojson"
    return "kml" if _is_kml(text) else None


def _is_kml(text: bytes) -> bool:
    """A KML root element after the XML declaration and comments; no DOCTYPE (KML needs none, and a DTD
    is how external entities and entity expansion bombs get in)."""
    position = 0
    while match := _XML_PROLOG.match(text, position):
        position = match.end()
    return bool(_KML_ROOT.match(text[position:].lstrip()))


def identify(path: Path) -> Format:
    """The format of ``path``, its extension and first bytes agreeing; raise :class:`UnsupportedFormat`."""
    sniffed = sniff(path)
    claimed = BY_EXTENSION.get(path.suffix.lower())
    if claimed is not None and claimed.kind != sniffed:
        raise UnsupportedFormat(f"{path.name} is not a {claimed.label} file (its content does not match)")
    if sniffed is None or (claimed is None and sniffed == "shp"):
        raise UnsupportedFormat(f"{path.name or 'The file'} is not a GeoJSON, KML, KMZ, GeoPackage or zipped Shapefile")
    return BY_KIND[sniffed]
