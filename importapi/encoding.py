"""Text encodings of real-world files: GeoJSON must reach GDAL as UTF-8; shapefiles need a hint sometimes.

Files from the field are often Windows-1252 or latin-1 although GeoJSON requires UTF-8, and shapefiles
often come without a ``.cpg``. The checks stream the file, so memory stays flat on large inputs.
"""

from __future__ import annotations

import codecs
from pathlib import Path

_CHUNK = 1024 * 1024


def is_utf8(path: Path, offset: int = 0) -> tuple[bool, bool]:
    """Whether the file (from ``offset``) decodes as UTF-8, and whether it has any non-ASCII byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    non_ascii = False
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(_CHUNK):
            if chunk.isascii() and not decoder.getstate()[0]:
                continue  # plain ASCII after a complete sequence is valid UTF-8: no need to decode it
            non_ascii = True
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False, True
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False, True
    return True, non_ascii


def utf8_copy(path: Path, work: Path) -> Path:
    """``path`` itself when it is UTF-8, else a UTF-8 copy in ``work`` (Windows-1252, or latin-1 if not)."""
    valid, _ = is_utf8(path)
    if valid:
        return path
    source_encoding = "cp1252" if _decodes(path, "cp1252") else "latin-1"
    target = work / f"utf8-{path.name}"
    with path.open("r", encoding=source_encoding, newline="") as src, target.open("w", encoding="utf-8") as out:
        while text := src.read(_CHUNK):
            out.write(text)
    return target


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def shapefile_config(shp: Path) -> dict[str, str]:
    """GDAL config for a shapefile that declares no encoding (no ``.cpg``, no language driver id).

    GDAL then passes the DBF's bytes through unchanged, which PostgreSQL refuses unless they are UTF-8;
    such files are nearly always latin-1 from desktop GIS, so they are read as ISO-8859-1.
    """
    siblings = {p.suffix.lower(): p for p in shp.parent.iterdir() if p.stem == shp.stem}
    if ".cpg" in siblings or ".dbf" not in siblings:
        return {}
    dbf = siblings[".dbf"]
    with dbf.open("rb") as handle:
        header = handle.read(32)
    if len(header) < 32 or header[29] != 0:
        return {}  # GDAL recodes from the language driver id
    valid, _ = is_utf8(dbf, int.from_bytes(header[8:10], "little"))
    return {} if valid else {"SHAPE_ENCODING": "ISO-8859-1"}
