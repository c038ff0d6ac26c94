"""Tile latency over a z0-z14 sweep of a generated 20,000-polygon layer (target: p99 < 50 ms).

    .venv/bin/python bench/tiles_bench.py [--polygons 20000] [--per-zoom 40] [--seed 7]

Uses the PostGIS of the environment (``./dev.sh up`` defaults: database ``gis``). Creates a layer table
laid out like the import's (``public.pre_bench_…``: ``ogc_fid`` key, ``wkb_geometry`` MultiPolygon 4326
with a GiST index, 6 attribute columns), requests tiles through the whole API stack (Flask app, pooled
connection, metadata query, tile query) and drops the table afterwards. Each tile is requested cold (built
by PostGIS), then again as a second visitor would (expensive tiles then come from the in-process cache).
The baseline measured in the same run is a 304 revalidation of the same tiles (routing + catalog
query, no tile building): the ratio shows what building tiles costs.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.app import create_app  # noqa: E402
from core.runtime import Runtime  # noqa: E402
from core.settings import Settings  # noqa: E402

TARGET_P99_MS = 50.0
AREA = (0.0, 0.0, 20.0, 15.0)  # west, south, east, north: a country-sized area
FIELDS = 'ogc_fid,"name",category,population,share,code,"updated"'

_CREATE = """
CREATE TABLE public.{table} (
    ogc_fid serial PRIMARY KEY,
    wkb_geometry geometry(MultiPolygon, 4326),
    name character varying, category character varying, population integer,
    share numeric, code character varying, updated character varying
);
INSERT INTO public.{table} (wkb_geometry, name, category, population, share, code, updated)
SELECT ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(%(w)s + random() * (%(e)s - %(w)s),
                                                  %(s)s + random() * (%(n)s - %(s)s)), 4326),
                          0.01 + random() * 0.09, 'quad_segs=5')),
       'Feature ' || i, (ARRAY['a', 'b', 'c', 'd'])[1 + i %% 4], (random() * 1e6)::int,
       round((random() * 100)::numeric, 3), md5(i::text), '2026-11-' || (1 + i %% 28)
FROM generate_series(1, %(count)s) AS i;
CREATE INDEX ON public.{table} USING gist (wkb_geometry);
ANALYZE public.{table};
"""


def tile_of(z: int, lon: float, lat: float) -> tuple[int, int]:
    size = 1 << z
    x = int((lon + 180.0) / 360.0 * size)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * size)
    return min(x, size - 1), min(y, size - 1)


def sweep(per_zoom: int, rng: random.Random) -> list[tuple[int, int, int]]:
    """Every tile over the area where there are few, else ``per_zoom`` random ones (a tenth outside it)."""
    tiles: list[tuple[int, int, int]] = []
    west, south, east, north = AREA
    for z in range(15):
        x0, y1 = tile_of(z, west, south)
        x1, y0 = tile_of(z, east, north)
        covering = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        if len(covering) <= per_zoom:
            tiles += covering
            continue
        tiles += rng.sample(covering, per_zoom - per_zoom // 10)
        tiles += [(z, *tile_of(z, rng.uniform(-170, -20), rng.uniform(-60, 60))) for _ in range(per_zoom // 10)]
    return tiles


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polygons", type=int, default=20000)
    parser.add_argument("--per-zoom", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = Settings.from_env()
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    client = app.test_client()
    layer = f"{settings.table_name_prefix}_bench_{uuid.uuid4().hex[:8]}"
    west, south, east, north = AREA
    try:
        started = time.perf_counter()
        with runtime.postgis.connection() as conn:
            params = {"w": west, "s": south, "e": east, "n": north, "count": args.polygons}
            for statement in _CREATE.format(table=layer).split(";\n"):
                if statement.strip():
                    conn.execute(statement, params if "%(" in statement else None)  # type: ignore[arg-type]
        print(f"layer {layer}: {args.polygons} polygons in {time.perf_counter() - started:.1f} s")
        run(client, layer, sweep(args.per_zoom, random.Random(args.seed)))
    finally:
        with runtime.postgis.connection() as conn:
            conn.execute(f"DROP TABLE IF EXISTS public.{layer}")
        runtime.close()


def run(client, layer: str, tiles: list[tuple[int, int, int]]) -> None:  # type: ignore[no-untyped-def]
    client.get(f"/gis/{layer}/5/0/0.pbf?fields={FIELDS}")  # warm the pool and the extent cache, build nothing
    timings: dict[int, list[float]] = {}
    revalidations: list[float] = []
    sizes: list[int] = []
    etags: dict[tuple[int, int, int], str] = {}
    for z, x, y in tiles:
        started = time.perf_counter()
        response = client.get(f"/gis/{layer}/{z}/{x}/{y}.pbf?geom=wkb_geometry&fields={FIELDS}")
        timings.setdefault(z, []).append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.data
        sizes.append(len(response.data))
        etags[(z, x, y)] = response.headers["ETag"]
    warm: list[float] = []
    for z, x, y in tiles:  # a second visitor: expensive tiles now come from the in-process cache
        started = time.perf_counter()
        client.get(f"/gis/{layer}/{z}/{x}/{y}.pbf?geom=wkb_geometry&fields={FIELDS}")
        warm.append((time.perf_counter() - started) * 1000)
    for (z, x, y), etag in etags.items():
        started = time.perf_counter()
        response = client.get(
            f"/gis/{layer}/{z}/{x}/{y}.pbf?geom=wkb_geometry&fields={FIELDS}", headers={"If-None-Match": etag}
        )
        revalidations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 304

    print(f"{'zoom':>4} {'tiles':>5} {'p50 ms':>8} {'max ms':>8}")
    for z, values in sorted(timings.items()):
        print(f"{z:>4} {len(values):>5} {statistics.median(values):>8.1f} {max(values):>8.1f}")
    every = [value for values in timings.values() for value in values]
    p50, p99 = percentile(every, 0.50), percentile(every, 0.99)
    base50, base99 = percentile(revalidations, 0.50), percentile(revalidations, 0.99)
    print(
        f"tiles: {len(every)}, mean size {statistics.mean(sizes) / 1024:.1f} KiB, largest {max(sizes) / 1024:.1f} KiB"
    )
    print(f"cold tile latency p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   (target p99 < {TARGET_P99_MS:.0f} ms)")
    print(f"second request    p50 {percentile(warm, 0.5):6.1f} ms   p99 {percentile(warm, 0.99):6.1f} ms   (cache)")
    print(f"baseline (304)    p50 {base50:6.1f} ms   p99 {base99:6.1f} ms")
    print(f"ratio tile/304    p50 {p50 / base50:6.1f}x   p99 {p99 / base99:6.1f}x")
    print(f"p99 / target      {p99 / TARGET_P99_MS:.2f}  ({'met' if p99 < TARGET_P99_MS else 'NOT met'})")


if __name__ == "__main__":
    main()
