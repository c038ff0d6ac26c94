"""Geopreview import benchmark: our pipeline vs the old service's ogr2ogr call vs a raw COPY (the floor).

    HDX_GISDB_PASS=... .venv/bin/python bench/import_bench.py [--points 200000] [--polygons 20000] [--repeat 3]
        [--skip-memory]

Generates a point GeoJSON and a polygon GeoJSON (~20 vertices each, mixed Polygon/MultiPolygon, 6 attribute
columns), then times in one run, against the PostGIS of the settings: ``run_import`` (ours, timed inside a
fresh child process as in an rq work horse, away from the bench's generated data); the old way
(``PG_USE_COPY NO``, ``-fieldTypeToString Real``, ``-overwrite``, plus the full re-run with
``PROMOTE_TO_MULTI`` the old service needed for mixed geometry types); a raw ``COPY`` of the same rows.

The floor is a real floor: the COPY payload (hex EWKB geometries, already multi, the cheapest form for the
server to parse) is rendered before the clock starts, and only ``CREATE TABLE`` plus the ``COPY`` into a
logged table with the same columns, types and primary key as our final layer table are timed (no spatial
index, no ANALYZE: those are extra work ours must also do). With ``--repeat N`` the three are run N times,
interleaved, and medians are printed. Prints both ratios, then the peak memory of a process downloading a
1 GB file through our downloader. Numbers depend on the machine and on what else runs on it: compare ratios
from the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shapely  # noqa: E402
from psycopg import sql  # noqa: E402

from app.settings import Settings  # noqa: E402
from core.postgis import connect  # noqa: E402
from importapi.ogr import child_env  # noqa: E402

ATTRS = ("name", "code", "population", "share", "category", "score")


def _props(i: int) -> dict:
    return {
        "name": f"place {i}",
        "code": i,
        "population": random.randint(0, 10**6),
        "share": round(random.random(), 6),
        "category": random.choice(["a", "b", "c"]),
        "score": round(random.uniform(-100, 100), 3),
    }


def _ring(x: float, y: float) -> list[list[float]]:
    pts = [[x + 0.01 * (k % 5), y + 0.01 * (k // 5)] for k in range(19)]
    return [*pts, pts[0]]


def make_points(path: Path, n: int) -> list[tuple]:
    rows, feats = [], []
    for i in range(n):
        x, y = random.uniform(-170, 170), random.uniform(-80, 80)
        p = _props(i)
        feats.append({"type": "Feature", "properties": p, "geometry": {"type": "Point", "coordinates": [x, y]}})
        rows.append((*p.values(), shapely.MultiPoint([(x, y)])))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return rows


def make_polygons(path: Path, n: int) -> list[tuple]:
    rows, feats = [], []
    for i in range(n):
        x, y = random.uniform(-170, 170), random.uniform(-80, 80)
        ring = _ring(x, y)
        if i % 2:
            geometry = {"type": "MultiPolygon", "coordinates": [[ring]]}
        else:
            geometry = {"type": "Polygon", "coordinates": [ring]}
        p = _props(i)
        feats.append({"type": "Feature", "properties": p, "geometry": geometry})
        rows.append((*p.values(), shapely.MultiPolygon([shapely.Polygon(ring)])))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return rows


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def old_way(settings: Settings, path: Path, table: str, mixed: bool) -> None:
    password = settings.postgis.password.get_secret_value() if settings.postgis.password else ""
    env = child_env({"PGPASSWORD": password}, drivers=("GeoJSON", "PostgreSQL"))
    base = ["ogr2ogr", "-f", "PostgreSQL", f"PG:{settings.postgis.conninfo(with_password=False)}", str(path)]
    base += ["-nln", table, "-overwrite", "-fieldTypeToString", "Real", "--config", "PG_USE_COPY", "NO"]
    base += ["-lco", "GEOMETRY_NAME=wkb_geometry", "-t_srs", "EPSG:4326"]
    first = subprocess.run(base, env=env, capture_output=True)
    if mixed or first.returncode != 0:  # the old service re-ran everything with promote-to-multi
        subprocess.run([*base, "-nlt", "PROMOTE_TO_MULTI"], env=env, check=True, capture_output=True)


OURS_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[3])
from app.settings import Settings
from importapi.pipeline import run_import
settings = Settings.from_env()
start = time.perf_counter()
result = run_import(sys.argv[1], sys.argv[2], settings=settings)
print(json.dumps({"seconds": time.perf_counter() - start, "timings": result.timings}))
"""


def ours_in_child(path: Path, layer_id: str) -> tuple[float, dict[str, float]]:
    """Our import timed inside a fresh process, as an rq work horse runs it (modules imported first).

    Not in this process: it holds the generated rows (~0.5 GB of Python objects), and beside them our
    parser's allocations ran 30-80 % slower (CPU), a cost a worker never has.
    """
    out = subprocess.run(
        [sys.executable, "-c", OURS_CHILD, str(path), layer_id, str(Path(__file__).resolve().parent.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report["seconds"], report["timings"]


def copy_payload(rows: list[tuple]) -> bytes:
    """COPY text of the rows, geometries as hex EWKB with SRID 4326 (rendered before timing)."""
    geometries = shapely.set_srid([row[-1] for row in rows], 4326)
    hexes = shapely.to_wkb(geometries, hex=True, include_srid=True)
    lines = ["\t".join(map(str, (*row[:-1], wkb))) for row, wkb in zip(rows, hexes, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def raw_copy(settings: Settings, payload: bytes, table: str, geometry: str) -> float:
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    with connect(settings, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (ogc_fid serial PRIMARY KEY, name varchar, code integer, population integer, "
                "share numeric, category varchar, score numeric, wkb_geometry geometry({}, 4326))"
            ).format(sql.Identifier(table), sql.SQL(geometry))
        )
        copy_sql = sql.SQL("COPY {} (name, code, population, share, category, score, wkb_geometry) FROM STDIN")
        with conn.cursor() as cur, cur.copy(copy_sql.format(sql.Identifier(table))) as copy:
            for offset in range(0, len(payload), 1 << 20):
                copy.write(payload[offset : offset + (1 << 20)])
        return time.perf_counter() - start


def drop(settings: Settings, *tables: str) -> None:
    with connect(settings, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def compare(
    settings: Settings, label: str, path: Path, rows: list[tuple], geometry: str, mixed: bool, repeat: int
) -> None:
    payload = copy_payload(rows)
    runs: list[tuple[float, float, float]] = []
    for _ in range(repeat):
        ours, stages = ours_in_child(path, f"bench_{label}_ours")
        old = timed(lambda: old_way(settings, path, f"bench_{label}_old", mixed))
        floor = raw_copy(settings, payload, f"bench_{label}_copy", geometry)
        drop(settings, f"bench_{label}_ours", f"bench_{label}_old", f"bench_{label}_copy")
        runs.append((ours, old, floor))
        detail = " ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())
        print(f"{label:>9}: ours {ours:6.2f}s | old way {old:6.2f}s | raw COPY {floor:6.2f}s   [ours: {detail}]")
    ours, old, floor = (statistics.median(column) for column in zip(*runs, strict=True))
    old_ratio = statistics.median(o / u for u, o, _ in runs)
    copy_ratio = statistics.median(u / f for u, _, f in runs)
    print(f"{'':>9}  median of {repeat}: ours {ours:.2f}s, old way {old:.2f}s, raw COPY {floor:.2f}s")
    print(f"{'':>9}  old/ours = {old_ratio:4.1f}x (target >= 5)   ours/COPY = {copy_ratio:4.2f}x (target <= 2.5)")


DOWNLOAD_CHILD = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from app.settings import Settings
from importapi.download import download
limits = {"MAX_FILE_SIZE_MB": "2000", "TIMEOUT_SEC": "600"}
settings = Settings.from_env({"HDXRQ_DOWNLOAD_ALLOWLIST": "127.0.0.1", **limits})
with tempfile.TemporaryDirectory() as d:
    done = download(sys.argv[1], Path(d), settings)
    assert done.size == int(sys.argv[2]), done.size
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec
status = Path("/proc/self/status").read_text()
print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) // 1024)
"""


def download_memory(size_mb: int) -> None:
    from tests.fakes import FakeService, Reply

    chunk = b"x" * (1024 * 1024)
    with FakeService("bench-files") as host:
        host.route("GET", "/big.zip", lambda call: Reply(body=(chunk for _ in range(size_mb))))
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", DOWNLOAD_CHILD, f"{host.url}/big.zip", str(size_mb * len(chunk)), str(Path.cwd())],
            capture_output=True,
            text=True,
            check=True,
        )
    elapsed = time.perf_counter() - start
    print(f"download: {size_mb} MB in {elapsed:.1f}s, peak RSS of the downloading process {out.stdout.strip()} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--polygons", type=int, default=20_000)
    parser.add_argument("--download-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1, help="runs per file; medians are printed")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    random.seed(7)
    with tempfile.TemporaryDirectory() as tmp:
        points, polygons = Path(tmp) / "points.geojson", Path(tmp) / "polygons.geojson"
        point_rows, polygon_rows = make_points(points, args.points), make_polygons(polygons, args.polygons)
        print(
            f"files: {args.points} points ({points.stat().st_size >> 20} MB), "
            f"{args.polygons} polygons ({polygons.stat().st_size >> 20} MB); cpus {os.cpu_count()}"
        )
        compare(settings, "points", points, point_rows, "MultiPoint", mixed=False, repeat=args.repeat)
        compare(settings, "polygons", polygons, polygon_rows, "MultiPolygon", mixed=True, repeat=args.repeat)
    if not args.skip_memory:
        download_memory(args.download_mb)
    print(f"(bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)")


if __name__ == "__main__":
    main()
