"""Unpack archives safely and pick the file to import.

A zip is judged from its own records before anything is unpacked, cheapest first, so a hostile one costs
a few reads and almost no memory:

1. the end-of-central-directory record (and its zip64 form): the entry count and the central directory's
   size are refused against the import's :class:`Budget` before a single entry is parsed;
2. the central directory, streamed one record at a time: the count is checked again as it goes (a record
   that understates it gains nothing), and each entry's *declared* size and compression ratio, and their
   sum, are refused against the budget; encrypted entries and symbolic links are refused;
3. the local headers, in file order: entries whose data overlap (one compressed stream reused by many
   entries, the "overlapping zip bomb") or reach into the central directory are refused.

Only then are the entries written, member by member, with names reduced to safe relative paths (no
``..``, no absolute paths, no drive letters), the bytes counted while writing, never trusted from the
headers. One :class:`Budget` covers the whole import: a zip inside a zip draws on what the outer one left.

Which file is imported, deterministically: the first by (format rank, folder depth, lower-cased path),
format ranks being Shapefile, GeoPackage, GeoJSON, KML, KMZ. macOS resource forks (``__MACOSX/``, ``._*``)
are ignored.
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import ArchiveTooLarge, NoLayerFound, UnsupportedFormat
from .formats import SOURCE_RANKS
from .settings import ImportSettings

_COPY_CHUNK = 1024 * 1024
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_MAX_COMMENT = 0xFFFF
_MAX_CENTRAL_RECORD = _CENTRAL.size + 3 * 0xFFFF


@dataclass
class Budget:
    """What one import may still unpack, across every archive and nesting level."""

    members: int
    bytes: int
    max_ratio: int

    @classmethod
    def from_settings(cls, config: ImportSettings) -> Budget:
        return cls(
            members=config.archive_max_members,
            bytes=config.archive_max_unpacked_mb * 1024 * 1024,
            max_ratio=config.archive_max_ratio,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One central-directory record, as much of it as unpacking needs."""

    name: str
    offset: int
    compressed: int
    size: int
    is_dir: bool


@dataclass(frozen=True)
class _Directory:
    count: int
    size: int
    offset: int


def read_entries(archive: Path, budget: Budget) -> list[Entry]:
    """The zip's entries, after every check of the module docstring; raise a coded error otherwise."""
    with archive.open("rb") as handle:
        directory = _end_of_central_directory(handle, archive.stat().st_size)
        if directory.count > budget.members:
            raise ArchiveTooLarge(f"The archive has more than {budget.members} entries")
        if directory.size > directory.count * _MAX_CENTRAL_RECORD:
            raise UnsupportedFormat("The archive's central directory is larger than its entries")
        entries = list(_central_directory(handle, directory, budget))
        _refuse_overlaps(handle, entries, directory.offset)
    return entries


def _end_of_central_directory(handle: BinaryIO, file_size: int) -> _Directory:
    tail_size = min(file_size, _EOCD.size + _MAX_COMMENT)
    handle.seek(file_size - tail_size)
    tail = handle.read(tail_size)
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or position + _EOCD.size > len(tail):
        raise UnsupportedFormat("The file is not a zip archive (no end-of-central-directory record)")
    _, disk, cd_disk, _, count, size, offset, _ = _EOCD.unpack_from(tail, position)
    record_at = file_size - tail_size + position
    end_of_directory = record_at
    locator_at = position - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        _, _, zip64_at, disks = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        if disks > 1 or zip64_at + _ZIP64_EOCD.size > record_at:
            raise UnsupportedFormat("Multi-part or damaged zip64 archives are not supported")
        handle.seek(zip64_at)
        record = handle.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            raise UnsupportedFormat("The archive's zip64 record is damaged")
        _, _, _, _, disk, cd_disk, _, count, size, offset = _ZIP64_EOCD.unpack(record)
        end_of_directory = zip64_at
    if disk != 0 or cd_disk != 0:
        raise UnsupportedFormat("Multi-part zip archives are not supported")
    if offset + size != end_of_directory:
        raise UnsupportedFormat("The archive has data before its first entry or a damaged central directory")
    return _Directory(count=count, size=size, offset=offset)


def _central_directory(handle: BinaryIO, directory: _Directory, budget: Budget) -> Iterator[Entry]:
    handle.seek(directory.offset)
    left, declared, count = directory.size, 0, 0
    while left > 0:
        entry, record_size = _central_record(handle, left)
        left -= record_size
        count += 1
        if count > directory.count:
            raise UnsupportedFormat("The archive's central directory holds more entries than it declares")
        if count > budget.members:
            raise ArchiveTooLarge(f"The archive has more than {budget.members} entries")
        if entry.size > max(entry.compressed, 1) * budget.max_ratio:
            raise ArchiveTooLarge(f"{entry.name[:100]} declares a compression ratio above {budget.max_ratio}")
        declared += entry.size
        if declared > budget.bytes:
            raise ArchiveTooLarge("The archive declares more unpacked bytes than allowed")
        yield entry
    if count != directory.count:
        raise UnsupportedFormat("The archive's entry count does not match its central directory")


def _central_record(handle: BinaryIO, left: int) -> tuple[Entry, int]:
    fixed = handle.read(_CENTRAL.size)
    if len(fixed) < _CENTRAL.size or left < _CENTRAL.size or not fixed.startswith(b"PK\x01\x02"):
        raise UnsupportedFormat("The archive's central directory is damaged")
    fields = _CENTRAL.unpack(fixed)
    system, flags = fields[2], fields[5]
    compressed, size, name_length, extra_length, comment_length = fields[10:15]
    attributes, offset = fields[17], fields[18]
    record_size = _CENTRAL.size + name_length + extra_length + comment_length
    variable = handle.read(name_length + extra_length + comment_length)
    if record_size > left or len(variable) < record_size - _CENTRAL.size:
        raise UnsupportedFormat("The archive's central directory is damaged")
    raw_name, extra = variable[:name_length], variable[name_length : name_length + extra_length]
    name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
    if flags & 0x1:
        raise UnsupportedFormat("Encrypted archives are not supported")
    if system == 3 and stat.S_ISLNK(attributes >> 16):
        raise UnsupportedFormat("The archive holds symbolic links")
    size, compressed, offset = _zip64_values(extra, size, compressed, offset)
    return Entry(name, offset, compressed, size, name.endswith(("/", "\\"))), record_size


def _zip64_values(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset from the zip64 extra field, for the ones the record marks as stored there."""
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, position)
        if tag == 0x0001:
            values = [size, compressed, offset]
            data, cursor = extra[position + 4 : position + 4 + length], 0
            for index, value in enumerate(values):
                if value == 0xFFFFFFFF and cursor + 8 <= len(data):
                    values[index] = struct.unpack_from("<Q", data, cursor)[0]
                    cursor += 8
            return values[0], values[1], values[2]
        position += 4 + length
    return size, compressed, offset


def _refuse_overlaps(handle: BinaryIO, entries: list[Entry], directory_offset: int) -> None:
    """Each entry's data must end before the next one starts, and all before the central directory."""
    end = 0
    for entry in sorted(entries, key=lambda item: item.offset):
        if entry.offset < end:
            raise UnsupportedFormat("The archive has overlapping entries")
        handle.seek(entry.offset)
        header = handle.read(_LOCAL.size)
        if len(header) < _LOCAL.size or not header.startswith(b"PK\x03\x04"):
            raise UnsupportedFormat("The archive's entries are damaged")
        name_length, extra_length = _LOCAL.unpack(header)[10:12]
        end = entry.offset + _LOCAL.size + name_length + extra_length + entry.compressed
    if end > directory_offset:
        raise UnsupportedFormat("The archive has overlapping entries")


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


def unpack_zip(archive: Path, target: Path, budget: Budget) -> list[Path]:
    """Unpack ``archive`` into ``target``, drawing on ``budget``; the files written."""
    entries = read_entries(archive, budget)
    budget.members -= len(entries)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if [(i.header_offset, i.compress_size, i.file_size) for i in infos] != [
                (e.offset, e.compressed, e.size) for e in entries
            ]:
                raise UnsupportedFormat("The archive's records are inconsistent")
            written: list[Path] = []
            for info in infos:
                relative = safe_member_path(info.filename)
                if relative is not None and not info.is_dir():
                    written.append(_extract_member(zf, info, target / relative, budget))
            return written
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError):
        raise UnsupportedFormat("The archive cannot be read") from None


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: Budget) -> Path:
    allowed = min(budget.bytes, max(info.compress_size, 1) * budget.max_ratio)
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as source, destination.open("wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > allowed:
                raise ArchiveTooLarge("The archive unpacks to more bytes than allowed (compression ratio or size)")
            out.write(chunk)
    budget.bytes -= written
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
