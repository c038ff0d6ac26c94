#!/usr/bin/env python3
"""Change-events benchmark: endpoint latency under load and detection throughput per process.

    .venv/bin/python bench/events_bench.py [--seconds 10] [--rate 50]

1. ``POST /api/create-change-events`` with a ~500 KB body at a fixed rate against the real API
   (``./hdxrq.py serve``, gunicorn) and the real Redis; baseline: ``GET /version`` at the same rate on the
   same server. Target: p99 < 20 ms.
2. Detection (parse + detect) over the example cases in one process; baseline: parsing alone.
   Target: >= 200 dataset pairs/s. Markdown results are cached per process; the cache is cleared before
   every pair so each pair pays for its own rendering, as distinct datasets do.

Uses a free Redis test database (the test suite's lock keys in db 0) and flushes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsapi import display  # noqa: E402
from eventsapi.detect import detect_events  # noqa: E402

SAMPLES = ROOT / "tests" / "eventsapi" / "samples"
CASES = ("01", "05", "07")
TARGET_BYTES = 500 * 1024


def case_body(number: str) -> dict[str, Any]:
    old = json.loads((SAMPLES / f"case-{number}-old.json").read_text())
    new = json.loads((SAMPLES / f"case-{number}-new.json").read_text())
    expected = json.loads((SAMPLES / f"case-{number}-expected.json").read_text())
    return {"username": expected["request"]["body"]["username"], "old_dataset_dict": old, "new_dataset_dict": new}


def big_body() -> bytes:
    """Case 05 with resources repeated until the body is ~500 KB (a large real dataset)."""
    body = case_body("05")
    resources = body["new_dataset_dict"]["resources"]
    copies = 0
    while len(json.dumps(body)) < TARGET_BYTES:
        for side in ("old_dataset_dict", "new_dataset_dict"):
            clone = dict(resources[copies % len(resources)], id=f"bench-{copies}")
            body[side]["resources"].append(clone)
        copies += 1
    return json.dumps(body).encode()


def claim_redis_db(admin: Redis) -> int:
    for db in range(16, 128):
        if admin.set(f"hdxrq:test-db-lock:{db}", os.getpid(), nx=True, ex=3600):
            return db
    raise SystemExit("no free Redis database")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"API did not start: {url}")


def paced(client: httpx.Client, method: str, url: str, body: bytes | None, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of requests sent at ``rate``/s for ``seconds`` (open loop, one connection)."""
    latencies = []
    interval, start = 1.0 / rate, time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = start + index * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        began = time.perf_counter()
        response = client.request(method, url, content=body, headers={"Content-Type": "application/json"})
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return latencies


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def endpoint_latency(rate: float, seconds: float) -> None:
    admin = Redis(host="127.0.0.1", port=6379, db=0)
    dbs = (claim_redis_db(admin), claim_redis_db(admin))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HDX_REDIS_ADDR": "127.0.0.1",
        "HDX_REDIS_GISDB": str(dbs[0]),
        "REDIS_STREAM_HOST": "127.0.0.1",
        "REDIS_STREAM_DB": str(dbs[1]),
        "HDXRQ_API_WORKERS": "1",
        "HDXRQ_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "hdxrq.py"), "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/version")
        body = big_body()
        with httpx.Client(timeout=10) as client:
            paced(client, "POST", f"{base}/api/create-change-events", body, rate, 1)  # warm-up
            baseline = paced(client, "GET", f"{base}/version", None, rate, seconds)
            measured = paced(client, "POST", f"{base}/api/create-change-events", body, rate, seconds)
        queued = Redis(host="127.0.0.1", port=6379, db=dbs[0]).llen("rq:queue:event_q")
        print(f"endpoint: {len(measured)} POSTs of {len(body) / 1024:.0f} KB at {rate:g}/s, {queued} jobs queued")
        for name, values in (("GET /version (baseline)", baseline), ("POST create-change-events", measured)):
            print(
                f"  {name:28s} p50 {statistics.median(values):6.2f} ms  p95 {percentile(values, 95):6.2f} ms"
                f"  p99 {percentile(values, 99):6.2f} ms  max {max(values):6.2f} ms"
            )
        p99 = percentile(measured, 99)
        ratio = p99 / percentile(baseline, 99)
        print(f"  p99 {p99:.2f} ms (target < 20 ms: {'met' if p99 < 20 else 'NOT met'}); {ratio:.1f}x the baseline p99")
    finally:
        server.terminate()
        server.wait(timeout=30)
        for db in dbs:
            Redis(host="127.0.0.1", port=6379, db=db).flushdb()
            admin.delete(f"hdxrq:test-db-lock:{db}")


def detection_throughput(seconds: float) -> None:
    raw_pairs = [json.dumps(case_body(number)).encode() for number in CASES]

    def run(detect: bool) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for raw in raw_pairs:
                body = json.loads(raw)
                if detect:
                    display._plain_text_of.cache_clear()
                    detect_events(body["old_dataset_dict"], body["new_dataset_dict"], body["username"], "t")
                count += 1
        return count / (time.perf_counter() - start)

    baseline = run(detect=False)
    measured = run(detect=True)
    print(f"detection: example cases {', '.join(CASES)} in one process, {seconds:g} s each")
    print(f"  parse only (baseline)   {baseline:10.0f} pairs/s")
    verdict = "met" if measured >= 200 else "NOT met"
    print(f"  parse + detect          {measured:10.0f} pairs/s (target >= 200: {verdict})")
    print(f"  detection costs {baseline / measured:.1f}x parsing alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared machines add noise)")
    detection_throughput(min(args.seconds, 5.0))
    endpoint_latency(args.rate, args.seconds)


if __name__ == "__main__":
    main()
