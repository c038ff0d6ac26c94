#!/usr/bin/env python3
"""Analytics benchmark: batched delivery against the old one-job-per-event way, and endpoint latency.

    .venv/bin/python bench/analytics_bench.py [--events 10000] [--old-events 10000] [--rate 500] [--seconds 5]

Same run, same fake Mixpanel server (tests/fakes.py), same two ``./hdxrq.py worker analytics_q`` processes,
the API as ``./hdxrq.py serve`` runs it in production (gunicorn). HTTP load comes from ``bench/openloop.py``
in a process of its own (a cheap asyncio client on keep-alive connections), never from this process.

1. New: ``--events`` distinct events POSTed to ``/api/send-analytics`` as fast as 16 connections allow,
   buffered in Redis and delivered by the workers in batches to ``/import``. Events/s from the first POST
   until the fake holds every event (distinct ``$insert_id``).
2. New, workers alone: the same number of events already buffered, one drain request.
3. Old: one RQ job per event on ``analytics_q`` whose function makes one ``Mixpanel.track`` HTTP call
   (what the old service did, minus its extra process fork). Events/s from the first enqueue until the fake
   holds every event. Target: new/old >= 30x.
4. Endpoint latency at a fixed ``--rate`` (open loop: requests leave on a timetable and latency counts from
   each one's scheduled send time), in ``--rounds`` rounds alternating with ``GET /version`` at the same rate
   as the baseline, while the workers deliver. p50/p99 and the API's CPU time per request. Target p99 < 5 ms.

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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import openloop  # noqa: E402
from core.connections import queue  # noqa: E402
from tests.fakes import FakeMixpanel  # noqa: E402

EXAMPLE = ROOT.parent / "shared" / "examples" / "analytics-01-resource-download.json"
HDXRQ_PY = str(ROOT / "hdxrq.py")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
BASELINE = "GET /version (baseline)"
MEASURED = "POST send-analytics"


def old_way_send(token: str, distinct_id: str, event_name: str, properties: dict[str, Any], api_url: str) -> None:
    """The old service's job: one event, one HTTP request to Mixpanel (run by the workers)."""
    from mixpanel import Consumer, Mixpanel

    Mixpanel(token, consumer=Consumer(events_url=api_url + "/track", retry_limit=0)).track(
        distinct_id, event_name, properties
    )


def claim_redis_db() -> int:
    admin = Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    for db in range(16, 128):
        if admin.set(f"hdxrq:test-db-lock:{db}", os.getpid(), nx=True, ex=3600):
            Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
            return db
    raise SystemExit("no free Redis database")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payload(number: int) -> dict[str, Any]:
    body = json.loads(EXAMPLE.read_text())["payload"]
    body["mixpanel_meta"]["time"] = 1728288000.0 + number / 1000
    return body


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise SystemExit("timed out")
        time.sleep(0.05)
    return time.monotonic()


class DeliveredCounter:
    """Distinct ``$insert_id`` values the fake received on ``/import``, read incrementally (cheap to poll)."""

    def __init__(self, fake: FakeMixpanel) -> None:
        self.fake, self.seen_calls, self.ids = fake, 0, set[str]()

    def __call__(self) -> int:
        calls = self.fake.import_calls()
        for call in calls[self.seen_calls :]:
            self.ids.update(event["properties"]["$insert_id"] for event in FakeMixpanel.events_in(call))
        self.seen_calls = len(calls)
        return len(self.ids)


def bodies_file(directory: Path, first: int, count: int) -> Path:
    """``count`` distinct send-analytics bodies, one JSON document per line."""
    path = directory / f"bodies-{first}-{count}.jsonl"
    path.write_text("\n".join(json.dumps(payload(first + n)) for n in range(count)))
    return path


def new_way(api: str, delivered: DeliveredCounter, count: int, bodies: Path) -> float:
    already = delivered()
    start = time.monotonic()
    result = openloop.run_in_subprocess(
        api + "/api/send-analytics", rate=100_000, seconds=count / 100_000, method="POST", body_file=bodies,
        body_lines=True, connections=16, expect='"success":true', timeout=120,
    )  # fmt: skip
    if result["errors"] or len(result["latency_ms"]) != count:
        raise SystemExit(f"send-analytics failed: {result['errors'][:3]}")
    end = wait_until(lambda: delivered() >= already + count, 600)
    return count / (end - start)


def delivery_only(redis: Redis, env: dict[str, str], delivered: DeliveredCounter, count: int, first: int) -> float:
    """Workers alone: ``count`` events already buffered, one drain request, until the fake holds them all."""
    from analyticsapi import buffer, trigger
    from analyticsapi.events import parse_event
    from core.settings import Settings

    already = delivered()
    for n in range(count):
        buffer.append(redis, parse_event(payload(first + n)))
    redis.delete(buffer.DRAIN_REQUESTED_KEY)
    start = time.monotonic()
    trigger.request_drain(redis, Settings.from_env(env))
    end = wait_until(lambda: delivered() >= already + count, 600)
    return count / (end - start)


def old_way(redis: Redis, fake: FakeMixpanel, count: int) -> float:
    q = queue("analytics_q", redis)
    start = time.monotonic()
    for n in range(count):
        body = payload(n)
        q.enqueue(
            "bench.analytics_bench.old_way_send",
            body["mixpanel_token"],
            body["mixpanel_tracking_id"],
            body["event_name"],
            body["mixpanel_meta"],
            fake.url,
            result_ttl=0,
        )
    end = wait_until(lambda: len(fake.calls_to("/track")) >= count, 3600)
    return count / (end - start)


def measure(server_pid: int, url: str, rate: float, seconds: float, **options: Any) -> dict[str, Any]:
    """One open-loop run plus the API's CPU time per request."""
    cpu_before = openloop.tree_cpu_seconds(server_pid)
    result = openloop.run_in_subprocess(url, rate=rate, seconds=seconds, connections=32, **options)
    result["cpu_ms"] = (openloop.tree_cpu_seconds(server_pid) - cpu_before) * 1000 / max(1, len(result["latency_ms"]))
    if result["errors"]:
        raise SystemExit(f"{url}: {len(result['errors'])} failed requests, e.g. {result['errors'][0]}")
    return result


def latency_rounds(server_pid: int, api: str, args: argparse.Namespace, bodies: Path) -> dict[str, list[dict]]:
    """Alternating rounds of the baseline (``GET /version``) and send-analytics at the same rate."""
    post = {"method": "POST", "body_file": bodies, "body_lines": True, "expect": '"success":true'}
    runs: dict[str, list[dict[str, Any]]] = {BASELINE: [], MEASURED: []}
    for _ in range(args.rounds):
        runs[BASELINE].append(measure(server_pid, api + "/version", args.rate, args.seconds, expect="version"))
        runs[MEASURED].append(measure(server_pid, api + "/api/send-analytics", args.rate, args.seconds, **post))
    return runs


def report_latency(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """Per-round figures and the median of the rounds for the baseline and the endpoint."""
    print(
        f"latency: {args.rounds} rounds of {args.seconds:g} s at {args.rate:g} req/s, open loop, from each request's"
        " scheduled send time, workers delivering meanwhile"
    )
    for name, results in runs.items():
        for number, run in enumerate(results, 1):
            print(f"  {name:24s} round {number}: {openloop.summary(run)}  API CPU {run['cpu_ms']:.2f} ms/request")
    for name, results in runs.items():
        p50 = statistics.median(openloop.percentile(run["latency_ms"], 50) for run in results)
        p99 = statistics.median(openloop.percentile(run["latency_ms"], 99) for run in results)
        cpu = statistics.median(run["cpu_ms"] for run in results)
        print(f"  {name:24s} median of rounds: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  API CPU {cpu:.2f} ms/request")
        if name == MEASURED:
            print(f"  send-analytics p99 {p99:.2f} ms (target p99 < 5 ms: {'met' if p99 < 5 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--old-events", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/endpoint latency runs")
    args = parser.parse_args()

    db = claim_redis_db()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    fake = FakeMixpanel()
    delivered = DeliveredCounter(fake)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HDX_REDIS_ADDR": REDIS_HOST,
        "HDX_REDIS_GISDB": str(db),
        "MIXPANEL_API_URL": fake.url,
        "HDXRQ_LOG_LEVEL": "WARNING",
        "HDXRQ_JOB_MODULES": "analyticsapi,bench.analytics_bench",  # the old way's job lives here
    }
    quiet = {"env": env, "cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([sys.executable, HDXRQ_PY, "serve", "--port", str(port)], **quiet)
    workers = [
        subprocess.Popen([sys.executable, HDXRQ_PY, "worker", "analytics_q"], **quiet) for _ in range(args.workers)
    ]
    api = f"http://127.0.0.1:{port}"
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared machines add noise)",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wait_until(lambda: _answers(api), 30)
            new_rate = new_way(api, delivered, args.events, bodies_file(Path(tmp), 0, args.events))
            print(f"new: {args.events} events via API + batched delivery: {new_rate:,.0f} events/s", flush=True)
            drain_rate = delivery_only(redis, env, delivered, args.events, args.events)
            print(f"new, workers alone: {args.events} pre-buffered events: {drain_rate:,.0f} events/s", flush=True)
            old_rate = old_way(redis, fake, args.old_events)
            print(f"old: {args.old_events} events, one RQ job + one HTTP call each: {old_rate:,.0f} events/s")
            print(
                f"ratio new/old: {new_rate / old_rate:,.1f}x end to end (target >= 30x); "
                f"workers alone: {drain_rate / old_rate:,.1f}x",
                flush=True,
            )
            count = int(args.rate * args.seconds)
            runs = latency_rounds(server.pid, api, args, bodies_file(Path(tmp), 2 * args.events, count))
            report_latency(runs, args)
    finally:
        for process in (server, *workers):
            process.terminate()
        for process in (server, *workers):
            process.wait(timeout=30)
        fake.close()
        redis.flushdb()
        Redis(host=REDIS_HOST, port=REDIS_PORT, db=0).delete(f"hdxrq:test-db-lock:{db}")


def _answers(api: str) -> bool:
    try:
        return httpx.get(api + "/version", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
