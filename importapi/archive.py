"""Unpack archives safely and pick the file to import.

Zips (and KMZ, which are zips) are unpacked member by member into the job's directory: member names are
reduced to safe relative paths (no ``..``, no absolute paths, no drive letters), so nothing lands outside
it; the member count, the unpacked bytes and each member's compression ratio are limited and counted
while writing, not trusted from the zip's headers.

Which file is imported, deterministically: the first by (format rank, folder depth, lower-cased path),
format ranks being Shapefile, GeoPackage, GeoJSON, KML, KMZ. macOS resource forks (``__MACOSX/``, ``._*``)
are ignored.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.settings import Settings

from .errors import ArchiveTooLarge, NoLayerFound, UnsupportedFormat

SOURCE_RANKS = {".shp": 0, ".gpkg": 1, ".geojson": 2, ".json": 2, ".kml": 3, ".kmz": 4}
"""File extensions that can be imported, in order of preference within an archive."""
ARCHIVE_EXTENSIONS = (".zip", ".kmz")
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may unpack to."""

    max_members: int
    max_unpacked_bytes: int
    max_ratio: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(
            max_members=settings.archive_max_members,
            max_unpacked_bytes=settings.archive_max_unpacked_mb * 1024 * 1024,
            max_ratio=settings.archive_max_ratio,
        )


def sniff_kind(path: Path) -> str:
    """``zip``, ``gpkg``, ``geojson``, ``kml`` or ``unknown`` from the first bytes (extension-independent)."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"SQLite format 3\x00"):
        return "gpkg"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{") or text.startswith(b"["):
        return "geojson"
    if text.startswith(b"<") and b"<kml" in head.lower():
        return "kml"
    return "unknown"


def safe_member_path(name: str) -> PurePosixPath | None:
    """A member name as a relative path that cannot escape the target folder (None for folders/junk)."""
    parts = [part for part in re.split(r"[\\/]+", name) if part not in ("", ".", "..")]
    parts = [re.sub(r"^[A-Za-z]:", "", part) for part in parts]
    parts = [part for part in parts if part]
    if not parts or name.endswith(("/", "\\")):
        return None
    if parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None
    return PurePosixPath(*parts)


def unpack_zip(archive: Path, target: Path, limits: ArchiveLimits) -> list[Path]:
    """Unpack ``archive`` into ``target`` within ``limits``; the files written."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            if len(members) > limits.max_members:
                raise ArchiveTooLarge(f"The archive has more than {limits.max_members} files")
            written: list[Path] = []
            budget = [limits.max_unpacked_bytes]
            for info in members:
                relative = safe_member_path(info.filename)
                if relative is not None:
                    written.append(_extract_member(zf, info, target / relative, limits, budget))
            return written
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise UnsupportedFormat(f"The archive cannot be read: {error}"[:200]) from None


def _extract_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, limits: ArchiveLimits, budget: list[int]
) -> Path:
    if info.file_size > budget[0]:
        raise ArchiveTooLarge("The archive unpacks to more bytes than allowed")
    allowed = min(budget[0], max(info.compress_size, 1) * limits.max_ratio)
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as source, destination.open("wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > allowed:
                raise ArchiveTooLarge("The archive unpacks to more bytes than allowed (compression ratio or size)")
            out.write(chunk)
    budget[0] -= written
    return destination


def choose_source(files: list[Path], root: Path) -> Path:
    """The file to import among unpacked ``files`` (see the module docstring for the rule)."""
    candidates = [path for path in files if path.suffix.lower() in SOURCE_RANKS]
    if not candidates:
        raise NoLayerFound("The archive contains no Shapefile, GeoPackage, GeoJSON or KML file")
    return min(candidates, key=lambda p: _rank(p, root))


def _rank(path: Path, root: Path) -> tuple[int, int, str]:
    relative = path.relative_to(root)
    return SOURCE_RANKS[path.suffix.lower()], len(relative.parts), str(relative).lower()


def remove_tree(path: Path) -> None:
    """Remove a job directory, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
