#!/usr/bin/env python3
"""Analytics benchmark: batched delivery against the old one-job-per-event way, and endpoint latency.

    .venv/bin/python bench/analytics_bench.py [--events 10000] [--old-events 10000] [--rate 500] [--seconds 5]

Same run, same fake Mixpanel server (tests/fakes.py), same two ``./hdxrq.py worker analytics_q`` processes:

1. New: ``--events`` events POSTed to ``/api/send-analytics`` on the real API (``./hdxrq.py serve``,
   gunicorn), buffered in Redis and delivered by the workers in batches to ``/import``. Events/s from the
   first POST until the fake holds every event.
2. Old: one RQ job per event on ``analytics_q`` whose function makes one ``Mixpanel.track`` HTTP call
   (what the old service did, minus its extra process fork). Events/s from the first enqueue until the fake
   holds every event. Target: new/old >= 30x.
3. Endpoint latency at a fixed ``--rate`` (open loop, persistent connections), p50/p99. Target p99 < 5 ms.

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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.connections import queue  # noqa: E402
from tests.fakes import FakeMixpanel  # noqa: E402

EXAMPLE = ROOT.parent / "shared" / "examples" / "analytics-01-resource-download.json"
HDXRQ_PY = str(ROOT / "hdxrq.py")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


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
        time.sleep(0.01)
    return time.monotonic()


def post_all(url: str, bodies: list[dict[str, Any]], threads: int = 16) -> None:
    local = threading.local()

    def post(body: dict[str, Any]) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=10)
        local.client = client
        response = client.post(url, json=body)
        if response.status_code != 200:
            raise SystemExit(f"send-analytics answered {response.status_code}: {response.text}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, bodies))


def new_way(api: str, fake: FakeMixpanel, count: int) -> float:
    start = time.monotonic()
    post_all(api + "/api/send-analytics", [payload(n) for n in range(count)])
    end = wait_until(lambda: len(fake.imported_events()) >= count, 600)
    return count / (end - start)


def delivery_only(redis: Redis, env: dict[str, str], fake: FakeMixpanel, count: int) -> float:
    """Workers alone: ``count`` events already buffered, one drain request, until the fake holds them all."""
    from analyticsapi import buffer, trigger
    from analyticsapi.events import parse_event
    from core.settings import Settings

    already = len(fake.imported_events())
    for n in range(count):
        buffer.append(redis, parse_event(payload(count + n)))
    redis.delete(buffer.DRAIN_REQUESTED_KEY)
    start = time.monotonic()
    trigger.request_drain(redis, Settings.from_env(env))
    end = wait_until(lambda: len(fake.imported_events()) >= already + count, 600)
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


def latency(api: str, rate: float, seconds: float, threads: int = 8) -> list[float]:
    """Open loop: each thread sends at rate/threads on its own keep-alive connection."""
    samples: list[float] = []
    lock = threading.Lock()
    per_thread = int(rate * seconds / threads)
    interval = threads / rate

    def run(offset: int) -> None:
        client = httpx.Client(timeout=10)
        body = json.dumps(payload(offset)).encode()
        headers = {"Content-Type": "application/json"}
        client.post(api + "/api/send-analytics", content=body, headers=headers)  # connect first
        due = time.perf_counter() + offset * interval / threads
        for _ in range(per_thread):
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            client.post(api + "/api/send-analytics", content=body, headers=headers)
            with lock:
                samples.append((time.perf_counter() - sent) * 1000)
            due += interval

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--old-events", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    db = claim_redis_db()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    fake = FakeMixpanel()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HDX_REDIS_ADDR": REDIS_HOST,
        "HDX_REDIS_GISDB": str(db),
        "MIXPANEL_API_URL": fake.url,
        "HDXRQ_LOG_LEVEL": "WARNING",
    }
    processes = [
        subprocess.Popen([sys.executable, HDXRQ_PY, "serve", "--port", str(port)], env=env, cwd=ROOT),
        *[
            subprocess.Popen([sys.executable, HDXRQ_PY, "worker", "analytics_q"], env=env, cwd=ROOT)
            for _ in range(args.workers)
        ],
    ]
    api = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(api), 30)
        new_rate = new_way(api, fake, args.events)
        print(f"new: {args.events} events via API + batched delivery: {new_rate:,.0f} events/s", flush=True)
        drain_rate = delivery_only(redis, env, fake, args.events)
        print(
            f"new, workers alone: {args.events} pre-buffered events delivered: {drain_rate:,.0f} events/s", flush=True
        )
        old_rate = old_way(redis, fake, args.old_events)
        print(f"old: {args.old_events} events, one RQ job + one HTTP call each: {old_rate:,.0f} events/s")
        print(
            f"ratio new/old: {new_rate / old_rate:,.1f}x end to end (target >= 30x); "
            f"workers alone: {drain_rate / old_rate:,.1f}x"
        )
        samples = latency(api, args.rate, args.seconds)
        print(
            f"send-analytics at {args.rate:.0f} req/s for {args.seconds:.0f}s ({len(samples)} requests): "
            f"p50 {statistics.median(samples):.2f} ms, p99 {percentile(samples, 0.99):.2f} ms (target p99 < 5 ms)"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
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
