"""Features touching ±180/±90 with rounding noise: the two ways of keeping them, measured.

    HDX_GISDB_PASS=... .venv/bin/python bench/bounds_bench.py [--countries 20000] [--vertices 40] [--repeat 5]
        [--natural-earth PATH]

Generates a world of country-like polygons tiling ±180/±90 (``--vertices`` per ring), the coordinates on its
outer edge written as Natural Earth's countries file has them (x = ±180.00000000000006, y one unit in the
last place past ±90), once as a shapefile with Natural Earth's ESRI .prj and once as GeoJSON; and the same
world with exact edges. Then, against the PostGIS of the settings:

1. kept features: ``run_import`` of the noisy world, shapefile (ogr2ogr) and GeoJSON (fast path), and of
   ``--natural-earth`` (a zip or .shp of Natural Earth's 110m countries) when given;
2. skipping the reprojection: the pipeline's own ogr2ogr command line with ``-t_srs EPSG:4326`` (today)
   against ``-a_srs EPSG:4326`` (what skipping would run) on the noisy shapefile, interleaved: medians of
   ogr2ogr's CPU time, the ratio, and the largest x each leaves in the table (the noise is in the file, so
   both keep it);
3. clamping's cost: ``run_import`` of the noisy world against the exact one (nothing to clamp),
   interleaved: medians of the whole import and of its finalize stage (where the ogr2ogr route clamps).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from psycopg import sql  # noqa: E402

from app.settings import Settings  # noqa: E402
from core.postgis import connect  # noqa: E402
from importapi import ogr  # noqa: E402
from importapi.pipeline import run_import  # noqa: E402

NATURAL_EARTH_PRJ = (
    'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
)
NOISY = {180.0: 180.00000000000006, -180.0: -180.00000000000006, 90.0: math.nextafter(90.0, 91.0)}
NOISY[-90.0] = -NOISY[90.0]


def world(columns: int, rows: int, vertices: int, noisy: bool) -> bytes:
    """A FeatureCollection of ``columns`` x ``rows`` cells, each a ring of about ``vertices`` positions."""
    side = max(1, vertices // 4)
    width, height = 360 / columns, 180 / rows
    features = []
    for column in range(columns):
        for row in range(rows):
            x0, y0 = -180 + column * width, -90 + row * height
            x1, y1 = (180.0 if column == columns - 1 else x0 + width), (90.0 if row == rows - 1 else y0 + height)
            ring = _cell_ring(x0, y0, x1, y1, side)
            if noisy:
                ring = [[NOISY.get(x, x), NOISY.get(y, y)] for x, y in ring]
            geometry = {"type": "Polygon", "coordinates": [ring]}
            properties = {"name": f"cell {column}/{row}", "code": column * rows + row}
            features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _cell_ring(x0: float, y0: float, x1: float, y1: float, side: int) -> list[list[float]]:
    steps = [k / side for k in range(side)]
    ring = [[x0 + (x1 - x0) * t, y0] for t in steps] + [[x1, y0 + (y1 - y0) * t] for t in steps]
    ring += [[x1 - (x1 - x0) * t, y1] for t in steps] + [[x0, y1 - (y1 - y0) * t] for t in steps]
    return [*ring, ring[0]]


def shapefile(folder: Path, name: str, content: bytes) -> Path:
    source = folder / f"{name}.geojson"
    source.write_bytes(content)
    target = folder / f"{name}.shp"
    subprocess.run(["ogr2ogr", "-f", "ESRI Shapefile", str(target), str(source)], check=True, capture_output=True)
    (folder / f"{name}.prj").write_text(NATURAL_EARTH_PRJ)
    return target


def kept(settings: Settings, path: Path, label: str) -> None:
    result = run_import(path, "bench_bounds", settings=settings)
    total = result.feature_count + result.removed_features
    print(f"{label:>34}: {result.feature_count} of {total} kept ({result.driver}), {result.message!r}")


def srs_flag_run(settings: Settings, path: Path, flag: str, work: Path) -> tuple[float, float, int]:
    """The pipeline's ogr2ogr argv with ``flag`` EPSG:4326: (ogr2ogr's CPU seconds, largest x in the table,
    features a strict ±180/±90 rule deletes). CPU, not wall time: on a shared machine it is the steadier."""
    info = ogr.inspect(path, work)
    password = settings.postgis.password.get_secret_value() if settings.postgis.password else None
    options = ogr.LoadOptions(settings.postgis.conninfo(with_password=False), password, "public", "bench_srs", 600)
    argv = ogr.load_argv(info, options)
    argv[argv.index("-t_srs")] = flag
    env = ogr.child_env({"PGPASSWORD": password or ""})
    drop(settings, "bench_srs")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=work)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    with connect(settings, autocommit=True) as conn:
        largest, strict = conn.execute(
            "SELECT max(ST_XMax(g)), count(*) FILTER (WHERE ST_XMin(g) < -180 OR ST_XMax(g) > 180 "
            "OR ST_YMin(g) < -90 OR ST_YMax(g) > 90) FROM (SELECT wkb_geometry AS g FROM bench_srs) AS t"
        ).fetchone()
    drop(settings, "bench_srs")
    return seconds, largest, strict


def drop(settings: Settings, *tables: str) -> None:
    with connect(settings, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def clamp_cost(settings: Settings, label: str, noisy: Path, exact: Path, repeat: int) -> None:
    """Medians of wall time, finalize stage and this process's CPU (the fast path parses here, ogr2ogr's
    route does its clamp here), noisy against exact, interleaved."""
    runs = []
    for _ in range(repeat):
        row = []
        for path in (noisy, exact):
            start, cpu = time.perf_counter(), time.process_time()
            result = run_import(path, "bench_bounds", settings=settings)
            row += [time.perf_counter() - start, result.timings["finalize"], time.process_time() - cpu]
        runs.append(row)
    medians = [statistics.median(column) for column in zip(*runs, strict=True)]
    for name, (total, finalize, cpu) in (("noisy", medians[:3]), ("exact", medians[3:])):
        print(
            f"{label if name == 'noisy' else '':>34}: {name} {total:.2f} s (finalize {finalize:.3f} s, CPU {cpu:.2f} s)"
        )
    print(f"{'':>34}  noisy/exact: wall {medians[0] / medians[3]:.2f}x, CPU {medians[2] / medians[5]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--countries", type=int, default=20_000)
    parser.add_argument("--vertices", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--natural-earth", type=Path)
    args = parser.parse_args()
    settings = Settings.from_env()
    rows = max(1, round(math.sqrt(args.countries / 2)))
    columns = max(1, args.countries // rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        noisy_json, exact_json = folder / "noisy.geojson", folder / "exact.geojson"
        noisy_json.write_bytes(world(columns, rows, args.vertices, noisy=True))
        exact_json.write_bytes(world(columns, rows, args.vertices, noisy=False))
        noisy_shp = shapefile(folder, "noisy_shp", noisy_json.read_bytes())
        exact_shp = shapefile(folder, "exact_shp", exact_json.read_bytes())
        edge = 2 * (columns + rows) - 4
        print(f"world: {columns * rows} polygons ({edge} on the edge), {args.vertices} vertices each")

        print("1. kept features")
        kept(settings, noisy_shp, "noisy world, shapefile")
        kept(settings, noisy_json, "noisy world, GeoJSON")
        if args.natural_earth:
            kept(settings, args.natural_earth, f"{args.natural_earth.name}")

        print("2. skipping the reprojection (ogr2ogr alone, noisy shapefile)")
        runs = [
            (*srs_flag_run(settings, noisy_shp, "-t_srs", folder), *srs_flag_run(settings, noisy_shp, "-a_srs", folder))
            for _ in range(args.repeat)
        ]
        t_srs, a_srs = statistics.median(r[0] for r in runs), statistics.median(r[3] for r in runs)
        strict = "features a strict ±180/±90 rule deletes"
        print(f"{'-t_srs EPSG:4326 (today)':>34}: {t_srs:.2f} s CPU, largest x {runs[0][1]!r}, {runs[0][2]} {strict}")
        print(f"{'-a_srs EPSG:4326 (skip)':>34}: {a_srs:.2f} s CPU, largest x {runs[0][4]!r}, {runs[0][5]} {strict}")
        print(f"{'':>34}  -t_srs/-a_srs {t_srs / a_srs:.2f}x")

        print("3. clamping's cost (noisy world against exact edges)")
        clamp_cost(settings, "shapefile (ogr2ogr, SQL clamp)", noisy_shp, exact_shp, args.repeat)
        clamp_cost(settings, "GeoJSON (fast path, numpy clamp)", noisy_json, exact_json, args.repeat)
    drop(settings, "bench_bounds")


if __name__ == "__main__":
    main()
