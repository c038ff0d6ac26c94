#!/usr/bin/env python3
"""Change-events benchmark: endpoint latency under load and detection throughput per process.

    .venv/bin/python bench/events_bench.py [--seconds 10] [--rate 50] [--rounds 3]

1. ``POST /api/create-change-events`` with a ~500 KB body at a fixed rate against the real API
   (``./hdxrq.py serve`` with its production settings) and the real Redis; baseline: ``GET /version`` at the
   same rate on the same server, in alternating rounds so the machine's noise shows in both. The load comes
   from ``bench/openloop.py`` in a process of its own: requests leave on a fixed timetable and latency counts
   from each one's scheduled send time (no coordinated omission). Also prints the API processes' CPU time
   per request, which depends far less on other load than latency does. Target: p99 < 20 ms.
2. Detection (parse + detect) over the example cases in one process; baseline: parsing alone.
   Target: >= 200 dataset pairs/s. Markdown results are cached per process; the cache is cleared before
   every pair so each pair pays for its own rendering, as distinct datasets do.

Uses a free Redis test database (the test suite's lock keys in db 0) and flushes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import openloop  # noqa: E402
from bench.common import claim_redis_db, free_port, release_redis_db  # noqa: E402
from eventsapi import display  # noqa: E402
from eventsapi.detect import detect_events  # noqa: E402
from eventsapi.intake import REQUEST_KEY_PREFIX  # noqa: E402

SAMPLES = ROOT / "tests" / "eventsapi" / "samples"
CASES = ("01", "05", "07")
TARGET_BYTES = 500 * 1024
BASELINE = "GET /version (baseline)"
MEASURED = "POST create-change-events"


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


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"API did not start: {url}")


def measure(server_pid: int, url: str, rate: float, seconds: float, **options: Any) -> dict[str, Any]:
    """One open-loop run (bench/openloop.py in its own process) plus the API's CPU time per request."""
    return openloop.measure(server_pid, url, rate=rate, seconds=seconds, connections=8, **options)


class Janitor(threading.Thread):
    """Stands in for the workers: drops each queued job and its parked body, so Redis stays small.

    Without it every 500 KB body would stay parked for its TTL (no worker runs here), Redis would grow by
    25 MB a second, and its snapshot forks would stall it for a time that has nothing to do with the API.
    """

    def __init__(self, redis: Redis) -> None:
        super().__init__(daemon=True)
        self.redis, self.stop, self.dropped = redis, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.wait(0.2):
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrange("rq:queue:event_q", 0, -1)
                pipe.delete("rq:queue:event_q")
                job_ids = [raw.decode() for raw in pipe.execute()[0]]
            if job_ids:
                request_ids = [job_id.removeprefix("change-events-") for job_id in job_ids]
                keys = [f"rq:job:{job_id}" for job_id in job_ids] + [REQUEST_KEY_PREFIX + rid for rid in request_ids]
                self.redis.unlink(*keys)
                self.dropped += len(job_ids)


def endpoint_latency(rate: float, seconds: float, rounds: int) -> None:
    """``rounds`` alternating runs of the baseline and the endpoint on one ``./hdxrq.py serve``."""
    admin = Redis(host="127.0.0.1", port=6379, db=0)
    dbs = (claim_redis_db(admin), claim_redis_db(admin))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HDX_REDIS_ADDR": "127.0.0.1",
        "HDX_REDIS_GISDB": str(dbs[0]),
        "REDIS_STREAM_HOST": "127.0.0.1",
        "REDIS_STREAM_DB": str(dbs[1]),
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
    runs: dict[str, list[dict[str, Any]]] = {BASELINE: [], MEASURED: []}
    janitor = Janitor(Redis(host="127.0.0.1", port=6379, db=dbs[0]))
    janitor.start()
    try:
        wait_until_up(f"{base}/version")
        body = big_body()
        with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
            body_file.write(body)
            body_file.flush()
            post = {"method": "POST", "body_file": body_file.name, "expect": '"state":"success"'}
            measure(server.pid, f"{base}/api/create-change-events", rate, 1, **post)  # warm-up
            for _ in range(rounds):
                runs[BASELINE].append(measure(server.pid, f"{base}/version", rate, seconds, expect="version"))
                runs[MEASURED].append(measure(server.pid, f"{base}/api/create-change-events", rate, seconds, **post))
    finally:
        janitor.stop.set()
        janitor.join()
        server.terminate()
        server.wait(timeout=30)
        for db in dbs:
            release_redis_db(admin, db)
    report_latency(runs, rate, seconds, len(body), janitor.dropped)


def report_latency(runs: dict[str, list[dict[str, Any]]], rate: float, seconds: float, size: int, queued: int) -> None:
    """Per-round figures and the median of the rounds for the baseline and the endpoint."""
    count = sum(len(run["latency_ms"]) for run in runs[MEASURED])
    print(
        f"endpoint: {len(runs[MEASURED])} rounds of {seconds:g} s at {rate:g}/s, open loop, latency from each"
        f" request's scheduled send time; {count} POSTs of {size / 1024:.0f} KB, {queued} jobs queued (and dropped)"
    )
    for name, results in runs.items():
        for number, run in enumerate(results, 1):
            print(f"  {name:27s} round {number}: {openloop.summary(run)}  {openloop.machine_summary(run)}")
    medians = {name: _median_of(results) for name, results in runs.items()}
    for name, (p50, p99, cpu) in medians.items():
        print(f"  {name:27s} median of rounds: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  API CPU {cpu:.2f} ms/request")
    p99 = medians[MEASURED][1]
    verdict = "met" if p99 < 20 else "NOT met"
    print(f"  p99 {p99:.2f} ms (target < 20 ms: {verdict}); baseline p99 {medians[BASELINE][1]:.2f} ms in the same run")


def _median_of(results: list[dict[str, Any]]) -> tuple[float, float, float]:
    return (
        statistics.median(openloop.percentile(run["latency_ms"], 50) for run in results),
        statistics.median(openloop.percentile(run["latency_ms"], 99) for run in results),
        statistics.median(run["cpu_ms"] for run in results),
    )


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
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/endpoint runs")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared machines add noise)")
    detection_throughput(min(args.seconds, 5.0))
    endpoint_latency(args.rate, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
