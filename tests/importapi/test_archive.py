"""Archives and file formats from the attacker's side, without a database: what is refused, how early, and
that nothing is written when a zip is refused.

The builders are the hostile corpus's (``tests/reliability/hostile.py``); the end-to-end runs of the same
files through a worker are in ``tests/reliability/test_hostile_files.py``.
"""

from __future__ import annotations

import io
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from importapi import archive, formats
from importapi.errors import ArchiveTooLarge, UnsupportedFormat
from tests.reliability import hostile

VRT = (
    b'<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>/etc/passwd</SrcDataSource></OGRVRTLayer>'
    b"</OGRVRTDataSource>"
)


def budget(members: int = 100, megabytes: float = 1, ratio: int = 200) -> archive.Budget:
    return archive.Budget(members=members, bytes=int(megabytes * 1024 * 1024), max_ratio=ratio)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_the_entry_count_is_refused_from_the_end_record_before_the_directory_is_read(tmp_path: Path) -> None:
    path = hostile.many_entries_zip(tmp_path / "many.zip", 5000)
    with path.open("r+b") as handle:  # wreck the central directory: reading it would fail differently
        handle.seek(40)
        handle.write(b"\0" * 4000 * 47)
    with pytest.raises(ArchiveTooLarge, match="more than 100 entries"):
        archive.read_entries(path, budget())


def test_a_directory_longer_than_its_end_record_says_is_refused_while_streaming(tmp_path: Path) -> None:
    # 200 declared entries may take that much room in principle: only reading the records shows the lie
    path = hostile.many_entries_zip(tmp_path / "liar.zip", 200_000, declared=200)
    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedFormat, match="more entries than it declares"):
            archive.read_entries(path, budget(members=10_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # 201 records read, not 200,000


def test_declared_sizes_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    big = hostile.zipped({"layer.geojson": b" " * (2 * 1024 * 1024)}, compression=zipfile.ZIP_STORED)
    target = tmp_path / "out"
    with pytest.raises(ArchiveTooLarge, match="declares more unpacked bytes"):
        archive.unpack_zip(write(tmp_path, "big.zip", big), target, budget(megabytes=1))
    assert not target.exists()
    ratio = hostile.zipped({"layer.geojson": b" " * (1024 * 1024)})
    with pytest.raises(ArchiveTooLarge, match="compression ratio above 200"):
        archive.unpack_zip(write(tmp_path, "ratio.zip", ratio), target, budget(megabytes=4))
    assert not target.exists()


@pytest.mark.parametrize("copies", [2, 1000])
def test_overlapping_entries_are_refused(tmp_path: Path, copies: int) -> None:
    path = write(tmp_path, "overlap.zip", hostile.overlapping_zip(copies))
    assert len(zipfile.ZipFile(path).infolist()) == copies  # Python's zipfile would unpack every copy
    with pytest.raises(UnsupportedFormat, match="overlapping"):
        archive.unpack_zip(path, tmp_path / "out", budget(members=10_000))
    assert not (tmp_path / "out").exists()


def test_an_entry_starting_inside_another_is_refused(tmp_path: Path) -> None:
    content = hostile.zipped({"a.geojson": hostile.VALID, "b.geojson": hostile.VALID}, compression=zipfile.ZIP_STORED)
    entries = zipfile.ZipFile(io.BytesIO(content)).infolist()
    directory = content.index(b"PK\x01\x02", entries[1].header_offset + 30)
    second_record = content.index(b"PK\x01\x02", directory + 4)
    # point b's record at a spot inside a's data
    patched = bytearray(content)
    struct.pack_into("<L", patched, second_record + 42, entries[0].header_offset + 40)
    with pytest.raises(UnsupportedFormat, match="overlapping"):
        archive.read_entries(write(tmp_path, "inside.zip", bytes(patched)), budget())


def test_one_budget_covers_nested_archives(tmp_path: Path) -> None:
    shared = budget(megabytes=0.75)
    outer = write(tmp_path, "outer.zip", hostile.nested_over_budget(0.5))
    (kmz,) = archive.unpack_zip(outer, tmp_path / "level0", shared)
    assert shared.bytes < 0.3 * 1024 * 1024
    with pytest.raises(ArchiveTooLarge):
        archive.unpack_zip(kmz, tmp_path / "level1", shared)
    assert not (tmp_path / "level1").exists()
    # each level alone fits the same limit: only the shared budget refuses the pair
    archive.unpack_zip(kmz, tmp_path / "alone", budget(megabytes=0.75))


def test_members_are_counted_across_archives(tmp_path: Path) -> None:
    shared = budget(members=3)
    first = write(tmp_path, "first.zip", hostile.zipped({"a.geojson": hostile.VALID, "b.txt": b"b"}))
    archive.unpack_zip(first, tmp_path / "first", shared)
    with pytest.raises(ArchiveTooLarge, match="more than 1 entries"):
        archive.unpack_zip(
            write(tmp_path, "second.zip", hostile.zipped({"c": b"c", "d": b"d"})), tmp_path / "x", shared
        )


def test_links_encryption_and_prefixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="symbolic links"):
        archive.read_entries(write(tmp_path, "links.zip", hostile.zip_with_symlinks()), budget())
    with pytest.raises(UnsupportedFormat, match="before its first entry"):
        archive.read_entries(write(tmp_path, "prefix.zip", hostile.zip_with_prefix()), budget())
    encrypted = bytearray(hostile.zipped({"layer.geojson": hostile.VALID}))
    record = encrypted.index(b"PK\x01\x02")
    encrypted[record + 8] |= 0x1
    with pytest.raises(UnsupportedFormat, match="Encrypted"):
        archive.read_entries(write(tmp_path, "secret.zip", bytes(encrypted)), budget())


def test_a_normal_zip_with_folders_unpacks(tmp_path: Path) -> None:
    content = hostile.zipped({"data/": b"", "data/Layer.GEOJSON": hostile.VALID, "__MACOSX/._x": b"junk"})
    written = archive.unpack_zip(write(tmp_path, "ok.zip", content), tmp_path / "out", budget())
    assert [path.relative_to(tmp_path / "out").as_posix() for path in written] == ["data/Layer.GEOJSON"]
    assert stat.S_ISREG(written[0].stat().st_mode)


@pytest.mark.parametrize("name", ["layer.shp", "layer.geojson", "layer.json", "layer.kml", "layer.gpkg"])
def test_a_vrt_in_disguise_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsupportedFormat, match="content does not match"):
        formats.identify(write(tmp_path, name, VRT))


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("a.geojson", b'\xef\xbb\xbf  {"type": "FeatureCollection"}', "geojson"),
        ("download", b'{"type": "FeatureCollection"}', "geojson"),
        ("a.KML", b'<?xml version="1.0"?>\n<!-- made by hand -->\n<kml xmlns="x"><Document/></kml>', "kml"),
        ("a.kml", b"<kml:kml xmlns:kml='http://www.opengis.net/kml/2.2'></kml:kml>", "kml"),
        ("doc", b"<kml><Document/></kml>", "kml"),
        ("a.shp", b"\x00\x00\x27\x0a" + b"\0" * 96, "shp"),
        ("a.gpkg", b"SQLite format 3\x00" + b"\0" * 84, "gpkg"),
        ("a.kmz", b"PK\x03\x04rest", "zip"),
        ("file", b"PK\x05\x06" + b"\0" * 18, "zip"),
    ],
)
def test_accepted_formats_by_extension_and_first_bytes(tmp_path: Path, name: str, content: bytes, kind: str) -> None:
    assert formats.identify(write(tmp_path, name, content)).kind == kind


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.kml", b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]><kml/>'),
        ("a.kml", b"<OGRVRTDataSource><!-- <kml> --></OGRVRTDataSource>"),
        ("a.gml", b'<gml:FeatureCollection xmlns:gml="http://www.opengis.net/gml"/>'),
        ("a.json", b"PK\x03\x04zip in disguise"),
        ("a.geojson", b"\xff\xfe{\x00"),
        ("download", b"\x00\x00\x27\x0a" + b"\0" * 96),  # a bare shapefile: its .dbf cannot come with it
        ("a.csv", b"WKT,name\nPOINT(1 2),x\n"),
        ("a.vrt", VRT),
    ],
)
def test_refused_formats(tmp_path: Path, name: str, content: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        formats.identify(write(tmp_path, name, content))
