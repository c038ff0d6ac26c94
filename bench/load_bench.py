"""Bounded load run against the real API (``./hdxrq.py serve``) and workers, on loopback only.

    .venv/bin/python bench/load_bench.py [--seconds 60] [--step-seconds 8] [--rates 40,80,120,...]
    .venv/bin/python bench/load_bench.py --rate 200 --layout lanes|all-strict|all-round-robin [--workers N]

What it does:

1. starts Redis-backed services for a private Redis db and a fresh PostGIS database (cloned from the
   ``hdxrq_template`` that ``./dev.sh`` prepares), local fake CKAN / Mixpanel / file host, and the service
   in one of three layouts: ``lanes`` is ``./hdxrq.py run`` as shipped (the API under uWSGI and one worker
   per lane, ``--workers`` of them); ``all-strict`` is the API and two workers on every queue in strict
   order (``run`` before the lanes), ``all-round-robin`` the same with rq's round-robin dequeue;
2. sends an open-loop mix (requests leave on a fixed schedule, latency counted from the scheduled moment,
   so a slow server cannot slow the load down and hide its queueing): 20 % create-change-events with a
   500 KB body (a title edit of a dataset with ~250 resources), 75 % send-analytics, 5 % add-layer, each
   from a ``bench/openloop.py`` process of its own;
3. steps the rate up (``--rates``, ``--step-seconds`` each) and keeps the highest rate with zero errors and
   p99 under the earlier issues' targets (send-analytics 5 ms, create-change-events 20 ms; add-layer 20 ms),
   or, when no step meets the targets, the highest rate with zero errors at which it keeps up (median within
   20 ms: no queue building); the report says which;
4. runs ``--seconds`` at that rate and prints the rate, p50/p99 per endpoint and the error count, then
   waits for the workers to catch up and checks that every accepted event reached the stream / Mixpanel;
5. reports how late change events reached the stream: each accepted create-change-events answer is
   timestamped by its generator, each stream entry by its id (Redis's clock, same host); a request's
   entries carry the ``event_time`` the API stamped just before answering, so the requests, in that order,
   are paired with the answers, in theirs (each with the first answer not before it); and how late each
   import's callback reached the fake CKAN after its import job ended (rq's ``ended_at``).

Every request goes to 127.0.0.1; the run stops by itself. Absolute numbers depend on the machine (2 cores
here, shared with the load generator and the fakes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import openloop  # noqa: E402
from bench.common import claim_redis_db, free_port, release_redis_db  # noqa: E402
from core import procs  # noqa: E402
from core.queues import QueueName  # noqa: E402
from tests.fakes import FakeCkan, FakeMixpanel, FakeService, Reply  # noqa: E402

EVENT_EXAMPLES = ROOT / "tests" / "eventsapi" / "samples"  # copies of shared/examples
ANALYTICS_EXAMPLES = ROOT / "tests" / "analyticsapi" / "samples"
TARGET_P99_MS = {"create-change-events": 20.0, "send-analytics": 5.0, "add-layer": 20.0}
MIX = (("create-change-events", 0.20), ("send-analytics", 0.75), ("add-layer", 0.05))
BODY_KB = 500
REDIS_DB_RANGE = range(100, 128)
LAYOUTS = ("lanes", "all-strict", "all-round-robin")
CATCH_UP_SEC = 300


def change_body() -> bytes:
    """A create-change-events body of about 500 KB: an edit (a new title) of the example dataset given as
    many resources as make up the size, the usual reason an HDX dataset dict is large."""
    dataset = json.loads((EVENT_EXAMPLES / "case-01-new.json").read_text())
    template = dataset["resources"][0]
    size_of_one = len(json.dumps(template)) * 2  # it is in the old and the new dict
    dataset["resources"] = [
        {**template, "id": str(uuid.UUID(int=number)), "name": f"file-{number}.csv", "position": number}
        for number in range(max(1, BODY_KB * 1024 // size_of_one))
    ]
    edited = {**dataset, "title": dataset["title"] + " (revised)"}
    return json.dumps({"username": "bench", "old_dataset_dict": dataset, "new_dataset_dict": edited}).encode()


class Load:
    """The open-loop mix: one ``bench/openloop.py`` process per endpoint, all started together.

    Each endpoint gets its share of the rate on a timetable of its own, so together they send the mix.
    The generators are processes of their own: generating the load in this process (it also runs the fake
    CKAN, Mixpanel and file host) charged the fakes' pauses to the API's latency.
    """

    def __init__(self, base: str, file_url: str, work: Path) -> None:
        self.base, self.file_url, self.work = base, file_url, work
        (work / "change.json").write_bytes(change_body())
        self.analytics = json.loads((ANALYTICS_EXAMPLES / "analytics-01-resource-download.json").read_text())["payload"]
        self.accepted: dict[str, int] = defaultdict(int)
        self.answered: dict[str, list[float]] = defaultdict(list)
        """When each accepted answer arrived (wall clock), per endpoint."""
        self.resource_ids: list[str] = []
        """The resources of the last run's add-layer requests."""

    def run(self, rate: float, seconds: float) -> dict[str, Any]:
        """Send ``rate`` requests/s for ``seconds``; per-endpoint p50/p99 (ms), counts, errors."""
        generators = {
            kind: subprocess.Popen(self._command(kind, rate * share, seconds), stdout=subprocess.PIPE, cwd=ROOT)
            for kind, share in MIX
        }
        report: dict[str, Any] = {"rate": rate, "seconds": seconds, "requests": 0, "errors": 0}
        machine_before = openloop.machine_ticks()
        for kind, generator in generators.items():
            out, _ = generator.communicate(timeout=seconds + 120)
            result = json.loads(out)
            values = result["latency_ms"]  # every answered request, good or not
            errors = len(result["errors"])
            refused = sum(1 for error in result["errors"] if error.startswith("HTTP"))
            report["requests"] += len(values) + errors - refused
            report[kind] = {
                "count": len(values),
                "p50_ms": round(openloop.percentile(values, 50), 2) if values else None,
                "p99_ms": round(openloop.percentile(values, 99), 2) if values else None,
                "errors": errors,
            }
            report["errors"] += errors
            self.accepted[kind] += len(values) - refused
            self.answered[kind] += result["answered_epoch"]
        report["steal_pct"] = round(openloop.steal_percent(machine_before, openloop.machine_ticks()), 1)
        return report

    def _command(self, kind: str, rate: float, seconds: float) -> list[str]:
        count = max(1, int(rate * seconds))
        options: dict[str, Any] = {"connections": 16, "warmup": 1}
        if kind == "create-change-events":
            url, expect = f"{self.base}/api/create-change-events", '"state":"success"'
            options.update(method="POST", body_file=self.work / "change.json")
        elif kind == "send-analytics":
            url, expect = f"{self.base}/api/send-analytics", '"success":true'
            bodies = self.work / "analytics.jsonl"
            with bodies.open("w") as out:  # distinct events: each must reach Mixpanel once
                for _ in range(count):
                    meta = {**self.analytics["mixpanel_meta"], "n": uuid.uuid4().hex}
                    out.write(json.dumps({**self.analytics, "mixpanel_meta": meta}) + "\n")
            options.update(method="POST", body_file=bodies, body_lines=True)
        else:
            url, expect = f"{self.base}/version", '"state":"processing"'
            urls = self.work / "add-layer.txt"
            query = f"resource_download_url={self.file_url}&url_type=upload"
            layer = f"{self.base}/api/add-layer/dataset/bench/resource"
            self.resource_ids = [str(uuid.uuid4()) for _ in range(count)]
            urls.write_text("".join(f"{layer}/{resource_id}?{query}\n" for resource_id in self.resource_ids))
            options.update(url_lines=urls)
        return openloop.command(url, rate=rate, seconds=seconds, expect=expect, **options)


def keeps_up(report: dict[str, Any]) -> bool:
    """Whether the server kept up with the rate: no queue building (median within the largest target)."""
    return all(report[kind]["p50_ms"] <= max(TARGET_P99_MS.values()) for kind in TARGET_P99_MS if kind in report)


def within_targets(report: dict[str, Any]) -> bool:
    if report["errors"]:
        return False
    return all(report[kind]["p99_ms"] <= limit for kind, limit in TARGET_P99_MS.items() if kind in report)


def service_commands(layout: str, port: int, workers: int) -> list[tuple[str, list[str]]]:
    """The processes of a layout, by name: ``run`` itself, or the API and two workers on every queue."""
    if layout == "lanes":
        return [("run", ["run", "--port", str(port), "--workers", str(workers)])]
    strategy = ["--dequeue-strategy", "round_robin"] if layout == "all-round-robin" else []
    every_queue = ["worker", "--with-scheduler", *strategy]
    return [("api", ["serve", "--port", str(port)]), ("worker-1", every_queue), ("worker-2", every_queue)]


def start_services(
    env: dict[str, str], logs: Path, layout: str, workers: int
) -> tuple[list[subprocess.Popen[bytes]], str]:
    port = free_port()
    processes = []
    for name, argv in service_commands(layout, port, workers):
        with (logs / f"{name}.log").open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "hdxrq.py"), *argv],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return processes, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the API did not start")


def cpu_by_process(processes: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds each service process used so far, with everything below it (work horses, ogr2ogr, rq's
    scheduler, uWSGI's workers; live or reaped), by name: ``api``, or ``worker <lanes>``, numbered when
    several share a name. ``run``'s children are named, not ``run`` itself."""
    found: dict[str, float] = {}
    for started in processes:
        argv = _argv(started.pid)
        for pid in procs.children(started.pid) if "run" in argv else [started.pid]:
            argv = _argv(pid)
            if "worker" in argv:
                lanes = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--lane"]
                name = "worker " + ("+".join(lanes) or "every queue")
            elif "serve" in argv or "uwsgi" in " ".join(argv).lower():
                name = "api"
            else:
                continue
            key, number = name, 1
            while key in found:
                number += 1
                key = f"{name} #{number}"
            found[key] = sum(_cpu_seconds(one) for one in [pid, *procs.descendants(pid)])
    return found


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (its own CPU and that of the children it reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stop_services(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def change_event_delays(stream: Redis, answered: list[float], since: float) -> dict[str, Any]:
    """How late the change events of the requests answered at ``answered`` (wall clock) reached the stream.

    A request's entries share the ``event_time`` the API stamped just before answering; its stream moment
    is its last entry's id (milliseconds, Redis's clock). Requests (by event time) are paired in order with
    the answers (by arrival), each with the first unpaired answer not before its event time; a request
    whose events never arrived shifts the pairing late, which only makes the delays look longer.
    """
    written: dict[str, float] = {}
    for entry_id, fields in stream.xrange("hdx_event_stream"):
        event_time = json.loads(fields[b"body"])["event_time"]
        moment = int(entry_id.split(b"-")[0]) / 1000
        written[event_time] = max(moment, written.get(event_time, 0.0))
    requests = sorted(
        (_epoch(event_time), moment) for event_time, moment in written.items() if _epoch(event_time) >= since
    )
    answers, delays, next_answer = sorted(answered), [], 0
    for stamped, moment in requests:
        while next_answer < len(answers) and answers[next_answer] < stamped:
            next_answer += 1
        if next_answer == len(answers):
            break
        delays.append(moment - answers[next_answer])
        next_answer += 1
    return {
        "change_requests_answered": len(answers),
        "change_requests_on_stream": len(requests),
        **_spread("change_event_delay", delays),
        "change_events_later_than_10s": sum(1 for delay in delays if delay > 10),
    }


def callback_delays(redis: Redis, ckan: FakeCkan, resource_ids: list[str]) -> dict[str, Any]:
    """From each import job's end (rq's ``ended_at``) to its callback's arrival at the fake CKAN."""
    received = {}
    for call in ckan.action_calls("hdx_resource_update_metadata"):
        received.setdefault(call.json()["id"], call.received_at)
    delays = []
    for resource_id in resource_ids:
        ended = redis.hget(f"rq:job:geopreview-{resource_id}", "ended_at")
        if ended and resource_id in received:
            delays.append(received[resource_id] - _epoch(ended.decode()))
    called_back = {"imports_requested": len(resource_ids), "imports_called_back": len(delays)}
    return {**called_back, **_spread("callback_delay", delays)}


def _spread(name: str, seconds: list[float]) -> dict[str, float | None]:
    """p50, p99 and maximum of ``seconds`` (null when there are none)."""
    figures = {"p50": openloop.percentile(seconds, 50), "p99": openloop.percentile(seconds, 99)}
    figures["max"] = max(seconds, default=float("nan"))
    return {f"{name}_{figure}_s": _rounded(value) for figure, value in figures.items()}


def _epoch(moment: str) -> float:
    """A UTC ISO 8601 time (``Z``, an offset or none) as epoch seconds."""
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _rounded(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN (nothing measured) → null


def catch_up(redis: Redis, stream: Redis, mixpanel: FakeMixpanel, load: Load, timeout: float) -> dict[str, Any]:
    """How long the workers take to empty the queues after the run; whether everything came out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        pending = sum(redis.llen(f"rq:queue:{name}") for name in (QueueName.EVENT, QueueName.ANALYTICS))
        published = len(redis.keys("hdxrq:events:request:*")) == 0
        delivered = len(mixpanel.imported_events()) >= load.accepted["send-analytics"]
        if not pending and published and delivered:
            break
        time.sleep(0.5)
    return {
        "catch_up_seconds": round(time.perf_counter() - started, 1),
        "change_requests_accepted": load.accepted["create-change-events"],
        "change_requests_still_parked": len(redis.keys("hdxrq:events:request:*")),
        "stream_entries": stream.xlen("hdx_event_stream"),
        "analytics_accepted": load.accepted["send-analytics"],
        "analytics_delivered_to_mixpanel": len({e["properties"]["n"] for e in mixpanel.imported_events()}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--step-seconds", type=float, default=8)
    parser.add_argument("--rates", default="25,50,100,150,200,300,400")
    parser.add_argument("--rate", type=float, default=None, help="skip the step-up: run at this rate")
    parser.add_argument("--layout", choices=LAYOUTS, default="lanes", help="how the workers are laid out")
    parser.add_argument("--workers", type=int, default=3, help="workers of the lanes layout (run --workers)")
    args = parser.parse_args()

    admin = Redis(db=0)
    db, stream_db = claim_redis_db(admin, REDIS_DB_RANGE), claim_redis_db(admin, REDIS_DB_RANGE)
    pg_db = f"hdxrq_bench_{uuid.uuid4().hex[:8]}"
    pg = {"host": "127.0.0.1", "user": "gis", "password": os.environ.get("HDX_GISDB_PASS", "gis")}
    with psycopg.connect(dbname="postgres", autocommit=True, **pg) as conn:
        conn.execute(f'CREATE DATABASE "{pg_db}" TEMPLATE hdxrq_template')
    logs = Path(f"/tmp/hdxrq-load-bench-{os.getpid()}")
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with FakeCkan() as ckan, FakeMixpanel() as mixpanel, FakeService("files") as files:
            files.route("GET", "/files/layer.geojson", Reply(body=_small_layer()))
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HDX_REDIS_GISDB": str(db),
                "REDIS_STREAM_DB": str(stream_db),
                "HDX_GISDB_ADDR": "127.0.0.1",
                "HDX_GISDB_DB": pg_db,
                "HDX_GISDB_PASS": pg["password"],
                "CKAN_API_BASE_URL": ckan.base_url,
                "HDX_GIS_API_KEY": "bench-key",
                "MIXPANEL_API_URL": mixpanel.url,
                "HDXRQ_DOWNLOAD_ALLOWLIST": "127.0.0.1",
                "HDXRQ_LOG_LEVEL": "WARNING",
            }
            processes, base = start_services(env, logs, args.layout, args.workers)
            load = Load(base, f"{files.url}/files/layer.geojson", logs)
            load.run(60, 4)  # warm-up: one connection per client thread, imports, caches
            best, best_without_errors = None, None
            for rate in [] if args.rate else [float(r) for r in args.rates.split(",")]:
                step = load.run(rate, args.step_seconds)
                print("step", json.dumps(step), "within targets:", within_targets(step), flush=True)
                if step["errors"] or not keeps_up(step):
                    break
                best_without_errors = step
                if within_targets(step):
                    best = step
            best = best or best_without_errors  # the machine may be too busy to meet the p99 targets at all
            best = {"rate": args.rate} if args.rate else best
            if best is None:
                raise SystemExit("even the lowest rate had errors")
            for kind in load.accepted:
                load.accepted[kind] = 0
                load.answered[kind] = []
            mixpanel.calls.clear()
            started, load_before, cpu_before = time.time(), os.getloadavg(), cpu_by_process(processes)
            final = load.run(best["rate"], args.seconds)
            final["within_targets"] = within_targets(final)
            final["targets_p99_ms"] = TARGET_P99_MS
            final["layout"], final["load_before_after"] = args.layout, [load_before[0], os.getloadavg()[0]]
            print("final", json.dumps(final), flush=True)
            stream, redis = Redis(db=stream_db), Redis(db=db)
            print("catch-up", json.dumps(catch_up(redis, stream, mixpanel, load, CATCH_UP_SEC)), flush=True)
            delays = change_event_delays(stream, load.answered["create-change-events"], started)
            delays.update(callback_delays(redis, ckan, load.resource_ids))
            print("delays", json.dumps(delays), flush=True)
            cpu_after = cpu_by_process(processes)
            cpu = {name: round(seconds - cpu_before.get(name, 0.0), 1) for name, seconds in cpu_after.items()}
            print("cpu seconds (run and catch-up)", json.dumps(cpu), flush=True)
    finally:
        stop_services(processes)
        for claimed in (db, stream_db):
            release_redis_db(admin, claimed)
        with psycopg.connect(dbname="postgres", autocommit=True, **pg) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
        print(f"logs in {logs}")


def _small_layer() -> bytes:
    feature = {"type": "Feature", "properties": {"n": 1}, "geometry": {"type": "Point", "coordinates": [10, 10]}}
    return json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()


if __name__ == "__main__":
    main()
