#!/usr/bin/env python3
"""Analytics benchmark: batched delivery against the old one-job-per-event way, and endpoint latency.

    .venv/bin/python bench/analytics_bench.py [--events 10000] [--old-events 10000] [--rate 500] [--seconds 5]

Same run, same fake Mixpanel server (tests/fakes.py), same two ``./hdxrq.py worker analytics_q`` processes,
the API as ``./hdxrq.py serve`` runs it in production (uWSGI). HTTP load comes from ``bench/openloop.py``
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
   as the baseline. p50/p99 and the API's CPU time per request. Target p99 < 5 ms. Only this load runs
   meanwhile (no flood), in two worker states: ``delivering`` (the workers deliver the events as they
   arrive, as in production) and ``paused`` (the workers SIGSTOPped: the endpoint alone with the machine),
   and for two kinds of client (``--clients``): ``keep-alive`` (a pool of 32 reused connections) and
   ``new-connection`` (connect, one request, close: what CKAN's ``requests.post`` without a session does).
   Each round also measures the machine's floor for such an endpoint: ``bench/floor_app.py`` (read the
   body, one Redis ``XADD``, answer) under the same uWSGI options, at the same rate with the same bodies.
5. Linger (``--linger-ms 0,500``; the other workers stopped first): for each value, fresh workers with
   ``HDXRQ_ANALYTICS_LINGER_MS`` set, then the burst of issue #20 (300 events in 0.4 s, open loop, to
   Mixpanel and GA4) and a steady trickle (``--trickle-rate`` events/s for 4 s), in ``--rounds`` rounds,
   values interleaved. Per value: Mixpanel requests and events per request, GA4 requests and how many were
   full (25), and the delivery latency p50/p99 (from each request's scheduled send time until the fake
   received the event), with what the linger adds over the first value (0: no linger) in the same round.

With ``--appendfsync everysec,always`` the service runs on a private ``redis-server`` of the benchmark's own
(AOF on, on the same disk as ``./dev.sh``'s) instead of the shared one, and every measurement is taken under
each fsync policy in turn (``CONFIG SET appendfsync`` between them): throughput through the API and the
latency rounds, interleaved, so both policies see the same machine. The old way is skipped in this mode.

Otherwise it uses a free Redis test database (the test suite's lock keys in db 0) and flushes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from rq import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import openloop  # noqa: E402
from bench.common import claim_redis_db, free_port, release_redis_db  # noqa: E402
from core.connections import queue  # noqa: E402
from core.procs import descendants  # noqa: E402
from core.queues import QueueName  # noqa: E402
from core.registry import Registry  # noqa: E402
from tests.fakes import FakeGa4, FakeMixpanel  # noqa: E402

EXAMPLE = ROOT / "tests" / "analyticsapi" / "samples" / "analytics-01-resource-download.json"  # shared/examples
HDXRQ_PY = str(ROOT / "hdxrq.py")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
BASELINE = "GET /version (baseline)"
MEASURED = "POST send-analytics"
FLOOR = "floor: XADD-only app"
MEASURED_PATH = "/api/send-analytics"


def old_way_send(token: str, distinct_id: str, event_name: str, properties: dict[str, Any], api_url: str) -> None:
    """The old service's job: one event, one HTTP request to Mixpanel (run by the workers)."""
    from mixpanel import Consumer, Mixpanel

    Mixpanel(token, consumer=Consumer(events_url=api_url + "/track", retry_limit=0)).track(
        distinct_id, event_name, properties
    )


def register(registry: Registry) -> None:
    """Let the benchmark's workers run the old way's job (``HDXRQ_EXTRA_JOB_MODULES``)."""
    registry.job(old_way_send)


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
    result = openloop.run_in_subprocess(
        api + "/api/send-analytics", rate=100_000, seconds=count / 100_000, method="POST", body_file=bodies,
        body_lines=True, connections=16, expect='"success":true', timeout=120,
    )  # fmt: skip
    if result["errors"] or len(result["latency_ms"]) != count:
        raise SystemExit(f"send-analytics failed: {result['errors'][:3]}")
    wait_until(lambda: delivered() >= already + count, 600)
    # From the first POST (the generator's start-up and warm-up are not the service's time).
    return count / (time.time() - result["first_due_epoch"])


def delivery_only(redis: Redis, env: dict[str, str], delivered: DeliveredCounter, count: int, first: int) -> float:
    """Workers alone: ``count`` events already buffered, one drain request, until the fake holds them all."""
    from analyticsapi import drain
    from analyticsapi.events import parse_event
    from app.settings import Settings

    already = delivered()
    for n in range(count):
        drain.append(redis, parse_event(payload(first + n)))
    redis.delete(drain.REQUESTED_KEY)
    start = time.monotonic()
    drain.request_drain(redis, Settings.from_env(env).analyticsapi)
    end = wait_until(lambda: delivered() >= already + count, 600)
    return count / (end - start)


def old_way(redis: Redis, fake: FakeMixpanel, count: int) -> float:
    q = queue(QueueName.ANALYTICS, redis)
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
    """One open-loop run (bench/openloop.py in its own process) plus the API's CPU time per request."""
    return openloop.measure(server_pid, url, rate=rate, seconds=seconds, connections=32, **options)


CLIENTS = {"keep-alive": False, "new-connection": True}
"""Client kinds: whether each request opens a connection of its own (``new_connection_per_request``)."""


def latency_round(
    servers: dict[str, tuple[int, str]], args: argparse.Namespace, bodies: Path, client: str
) -> dict[str, dict]:
    """One run of the baseline (``GET /version``), one of send-analytics and one of the floor app, at the
    same rate. ``servers``: name -> (server pid, URL)."""
    fresh = CLIENTS[client]
    post = {"method": "POST", "body_file": bodies, "body_lines": True, "expect": '"success":true'}
    options = {BASELINE: {"expect": "version"}, MEASURED: post, FLOOR: post}
    return {
        name: measure(pid, url, args.rate, args.seconds, new_connection_per_request=fresh, **options[name])
        for name, (pid, url) in servers.items()
    }


def report_latency(runs: dict[str, list[dict[str, Any]]], title: str) -> dict[str, float]:
    """Per-round figures and the median of the rounds for each line; name -> median p99."""
    print(f"  {title}:")
    for name, results in runs.items():
        for number, run in enumerate(results, 1):
            print(f"    {name:24s} round {number}: {openloop.summary(run)}  {openloop.machine_summary(run)}")
    p99s = {}
    for name, results in runs.items():
        p50 = statistics.median(openloop.percentile(run["latency_ms"], 50) for run in results)
        p99s[name] = statistics.median(openloop.percentile(run["latency_ms"], 99) for run in results)
        cpu = statistics.median(run["cpu_ms"] for run in results)
        print(
            f"    {name:24s} median of rounds: p50 {p50:6.2f} ms  p99 {p99s[name]:6.2f} ms  "
            f"server CPU {cpu:.2f} ms/request"
        )
    return p99s


def latency(
    servers: dict[str, tuple[int, str]], workers: list[subprocess.Popen[bytes]], redis: Redis, args: argparse.Namespace
) -> None:
    """Endpoint latency for each client kind, with the workers delivering and with them paused.

    Every round runs each (worker state, client) pair once, so all pairs see the same machine over time.
    """
    print(
        f"latency: {args.rounds} rounds of {args.seconds:g} s at {args.rate:g} req/s each, open loop, from each"
        " request's scheduled send time; nothing else from this benchmark runs meanwhile",
        flush=True,
    )
    count = int(args.rate * args.seconds)
    pairs = [
        (policy, state, client)
        for policy in fsync_policies(args)
        for state in args.worker_states.split(",")
        for client in args.clients.split(",")
    ]
    runs: dict[tuple[str, ...], dict[str, list[dict[str, Any]]]] = {p: {name: [] for name in servers} for p in pairs}
    with tempfile.TemporaryDirectory() as tmp:
        bodies = bodies_file(Path(tmp), 3 * args.events, count)
        for _ in range(args.rounds):
            for policy, state, client in pairs:
                set_fsync_policy(redis, policy)
                with paused(workers, state == "paused"):
                    for name, run in latency_round(servers, args, bodies, client).items():
                        runs[(policy, state, client)][name].append(run)
                if state == "paused":  # let the workers catch up before the next measurement
                    wait_until(lambda: _backlog(redis) == 0, 120)
    summary: dict[tuple[str, ...], tuple[str, dict[str, float]]] = {}
    for (policy, state, client), pair_runs in runs.items():
        title = f"workers {state}, {client} client" + (f", appendfsync {policy}" if policy else "")
        summary[(policy, state, client)] = (title, report_latency(pair_runs, title))
    for title, p99s in summary.values():
        p99 = p99s[MEASURED]
        print(
            f"  send-analytics p99 {p99:6.2f} ms, {title} (target p99 < 5 ms: {'met' if p99 < 5 else 'NOT met'});"
            f" the XADD-only floor {p99s[FLOOR]:.2f} ms, GET /version {p99s[BASELINE]:.2f} ms"
        )
    first, *others = fsync_policies(args)
    for policy, state, client in summary:
        if policy in others:
            ratio = summary[(policy, state, client)][1][MEASURED] / summary[(first, state, client)][1][MEASURED]
            print(f"  send-analytics p99 {policy}/{first}: {ratio:.2f}x (workers {state}, {client} client)")


def _backlog(redis: Redis) -> int:
    from analyticsapi import buffer

    return buffer.SinkBuffer(redis, "mixpanel").backlog()


def fsync_policies(args: argparse.Namespace) -> list[str]:
    """The AOF fsync policies to compare (``--appendfsync``), or ``[""]``: the shared Redis as it is."""
    return args.appendfsync.split(",") if args.appendfsync else [""]


def set_fsync_policy(redis: Redis, policy: str) -> None:
    if policy:
        redis.config_set("appendfsync", policy)


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[int]:
    """A ``redis-server`` of the benchmark's own with AOF on, in ``directory``; its port."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _pings(port), 30)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _pings(port: int) -> bool:
    try:
        return bool(Redis(host=REDIS_HOST, port=port).ping())
    except Exception:
        return False


@contextlib.contextmanager
def paused(workers: list[subprocess.Popen[bytes]], pause: bool) -> Iterator[None]:
    """SIGSTOP the workers and their work horses for the duration (events are only buffered meanwhile)."""
    pids = [pid for worker in workers for pid in (worker.pid, *descendants(worker.pid))] if pause else []
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--old-events", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/endpoint latency runs")
    parser.add_argument("--clients", default="keep-alive,new-connection", help="client kinds for the latency runs")
    parser.add_argument("--worker-states", default="delivering,paused", help="worker states for the latency runs")
    parser.add_argument("--skip-throughput", action="store_true", help="no throughput runs")
    parser.add_argument("--skip-latency", action="store_true", help="no endpoint latency runs")
    parser.add_argument("--linger-ms", default="0,500", help="linger values to compare ('' for none); 0 first")
    parser.add_argument("--trickle-rate", type=float, default=50, help="events/s of the linger runs' trickle")
    parser.add_argument("--appendfsync", default="", help="e.g. everysec,always: compare on a private Redis")
    args = parser.parse_args()
    if not args.appendfsync:
        db = claim_redis_db(Redis(host=REDIS_HOST, port=REDIS_PORT, db=0))
        try:
            run(args, REDIS_PORT, db)
        finally:
            release_redis_db(Redis(host=REDIS_HOST, port=REDIS_PORT, db=0), db)
        return
    (ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as directory, private_redis(Path(directory)) as port:
        run(args, port, 1)


def run(args: argparse.Namespace, redis_port: int, db: int) -> None:
    """Everything against database ``db`` of the Redis on ``redis_port``."""
    redis = Redis(host=REDIS_HOST, port=redis_port, db=db)
    fake, ga4 = FakeMixpanel(), FakeGa4()
    delivered = DeliveredCounter(fake)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HDX_REDIS_ADDR": REDIS_HOST,
        "HDX_REDIS_PORT": str(redis_port),
        "HDX_REDIS_GISDB": str(db),
        "MIXPANEL_API_URL": fake.url,
        "GA4_ENDPOINT": ga4.endpoint,
        "GA4_MEASUREMENT_ID": "G-BENCH",
        "GA4_API_SECRET": "bench-secret",
        "HDXRQ_LOG_LEVEL": "WARNING",
        "HDXRQ_EXTRA_JOB_MODULES": "bench.analytics_bench",  # the old way's job lives here
    }
    quiet = {"env": env, "cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([sys.executable, HDXRQ_PY, "serve", "--port", str(port)], **quiet)
    floor_port = free_port()
    floor = subprocess.Popen(floor_command(env, floor_port), **quiet)
    workers = [
        subprocess.Popen([sys.executable, HDXRQ_PY, "worker", QueueName.ANALYTICS], **quiet)
        for _ in range(args.workers)
    ]
    api = f"http://127.0.0.1:{port}"
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared machines add noise)",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wait_until(lambda: _answers(api), 30)
            if not args.skip_throughput:
                throughput(api, redis, env, fake, delivered, args, Path(tmp))
            floor_url = f"http://127.0.0.1:{floor_port}"
            wait_until(lambda: _answers(floor_url), 30)
            servers = {
                BASELINE: (server.pid, api + "/version"),
                MEASURED: (server.pid, api + MEASURED_PATH),
                FLOOR: (floor.pid, floor_url + MEASURED_PATH),
            }
            if not args.skip_latency:
                latency(servers, workers, redis, args)
            stop(workers)
            if args.linger_ms:
                values = [int(value) for value in args.linger_ms.split(",")]
                linger(values, api, redis, env, fake, ga4, args, Path(tmp))
    finally:
        stop([server, floor, *workers])
        fake.close()
        ga4.close()


def throughput(
    api: str, redis: Redis, env: dict[str, str], fake: FakeMixpanel, delivered: DeliveredCounter,
    args: argparse.Namespace, tmp: Path,
) -> None:  # fmt: skip
    """Events/s of the new way (through the API, and the workers alone) and of the old way; their ratio.
    With ``--appendfsync``: the new way through the API only, under each policy."""
    if args.appendfsync:
        rates = {}
        for number, policy in enumerate(fsync_policies(args)):
            set_fsync_policy(redis, policy)
            rates[policy] = new_way(api, delivered, args.events, bodies_file(tmp, number * args.events, args.events))
            print(
                f"appendfsync {policy}: {args.events} events via API + batched delivery: {rates[policy]:,.0f} events/s"
            )
        first, *others = fsync_policies(args)
        for policy in others:
            print(f"ratio {policy}/{first}: {rates[policy] / rates[first]:.2f}x events/s", flush=True)
        return
    new_rate = new_way(api, delivered, args.events, bodies_file(tmp, 0, args.events))
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


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(timeout=30)


LINGER_BASE = 5_000_000
"""Event numbers of the linger runs start here (distinct from every other run's events)."""


def linger(
    values: list[int], api: str, redis: Redis, env: dict[str, str], fake: FakeMixpanel, ga4: FakeGa4,
    args: argparse.Namespace, tmp: Path,
) -> None:  # fmt: skip
    """Requests and events per request, and delivery latency, for each linger value (see the docstring, 5)."""
    scenarios = {"burst 300 in 0.4 s": (750.0, 0.4), f"trickle {args.trickle_rate:g}/s": (args.trickle_rate, 4.0)}
    print(f"linger: {args.rounds} rounds, {args.workers} workers per value, values {values} interleaved", flush=True)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(s, v): [] for s in scenarios for v in values}
    first = LINGER_BASE
    for _ in range(args.rounds):
        for value in values:
            workers = [
                subprocess.Popen(
                    [sys.executable, HDXRQ_PY, "worker", QueueName.ANALYTICS],
                    env={**env, "HDXRQ_ANALYTICS_LINGER_MS": str(value)},
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]
            wait_until(lambda: Worker.count(connection=redis) >= args.workers, 60)  # started, not still importing
            try:
                for scenario, (rate, seconds) in scenarios.items():
                    runs[(scenario, value)].append(linger_run(api, fake, ga4, rate, seconds, first, tmp))
                    first += 100_000
            finally:
                stop(workers)
    for scenario in scenarios:
        print(f"  {scenario}:")
        base = runs[(scenario, values[0])]
        for value in values:
            print(f"    linger {value:5d} ms: {linger_summary(runs[(scenario, value)], base)}", flush=True)


def linger_run(
    api: str, fake: FakeMixpanel, ga4: FakeGa4, rate: float, seconds: float, first: int, tmp: Path
) -> dict[str, Any]:
    """One open-loop run of ``rate * seconds`` events (to Mixpanel and GA4); what the fakes received."""
    count = int(rate * seconds)
    bodies = tmp / f"linger-{first}.jsonl"
    bodies.write_text("\n".join(json.dumps({**payload(first + n), "send_ga": True}) for n in range(count)))
    mixpanel_before, ga4_before = len(fake.import_calls()), len(ga4.collect_calls())
    result = openloop.run_in_subprocess(
        api + MEASURED_PATH, rate=rate, seconds=seconds, method="POST", body_file=bodies, body_lines=True,
        connections=16, expect='"success":true', timeout=60,
    )  # fmt: skip
    if result["errors"]:
        raise SystemExit(f"send-analytics failed: {result['errors'][:3]}")
    wait_until(lambda: _events(ga4.collect_calls()[ga4_before:]) >= count, 120)
    wait_until(lambda: sum(len(FakeMixpanel.events_in(c)) for c in fake.import_calls()[mixpanel_before:]) >= count, 120)
    due = {first + n: result["first_due_epoch"] + n / rate for n in range(count)}
    mixpanel_calls, ga4_calls = fake.import_calls()[mixpanel_before:], ga4.collect_calls()[ga4_before:]
    latencies = [
        (call.received_at - due[_number(event["properties"]["time"])]) * 1000
        for call in mixpanel_calls
        for event in FakeMixpanel.events_in(call)
    ]
    return {
        "events": count,
        "mixpanel_sizes": [len(FakeMixpanel.events_in(call)) for call in mixpanel_calls],
        "ga4_sizes": [len(call.json()["events"]) for call in ga4_calls],
        "latency_ms": latencies,
    }


def _events(calls: list[Any]) -> int:
    return sum(len(call.json()["events"]) for call in calls)


def _number(event_time: float) -> int:
    """The event number :func:`payload` encoded in the event's time."""
    return round((event_time - 1728288000.0) * 1000)


def linger_summary(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    """Medians over the rounds; latency added against ``base`` (the first value's runs, same rounds)."""

    def median(key: Callable[[dict[str, Any]], float], of: list[dict[str, Any]] = runs) -> float:
        return statistics.median(key(run) for run in of)

    requests = median(lambda run: len(run["mixpanel_sizes"]))
    per_request = median(lambda run: run["events"] / len(run["mixpanel_sizes"]))
    ga4_requests = median(lambda run: len(run["ga4_sizes"]))
    full = median(lambda run: sum(size == 25 for size in run["ga4_sizes"]) / len(run["ga4_sizes"]) * 100)
    p50, p99 = (median(lambda run, q=q: openloop.percentile(run["latency_ms"], q)) for q in (50, 99))
    base50, base99 = (median(lambda run, q=q: openloop.percentile(run["latency_ms"], q), base) for q in (50, 99))
    return (
        f"Mixpanel {requests:g} requests, {per_request:.1f} events/request; GA4 {ga4_requests:g} requests, "
        f"{full:.0f}% full; delivery latency p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"(linger adds {p50 - base50:+.0f} / {p99 - base99:+.0f} ms)"
    )


def floor_command(env: dict[str, str], port: int) -> list[str]:
    """uWSGI serving bench/floor_app.py with exactly the options ``./hdxrq.py serve`` gives the API."""
    from app.serve import uwsgi_options
    from app.settings import Settings

    options = uwsgi_options(Settings.from_env(env), "127.0.0.1", port)
    options[options.index("--module") + 1] = "bench.floor_app:app"
    return [str(Path(sys.executable).with_name("uwsgi")), *options]


def _answers(api: str) -> bool:
    try:
        return httpx.get(api + "/version", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
