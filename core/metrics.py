"""Prometheus metrics at ``GET /metrics``.

Two kinds, deliberately:

* **Cluster metrics live in Redis** and are read at scrape time: queue depths and the age of the oldest
  job, workers by state, job outcomes and durations (workers add to Redis counters when a job ends), and
  whatever the slices register (callbacks pending, analytics buffer, stream lag...). Any API process
  shows the whole cluster, however many worker machines there are, and workers need no port of their own.
* **HTTP request latency** is per API process, in prometheus_client's multiprocess mode under uWSGI
  (``./hdxrq.py serve`` sets ``PROMETHEUS_MULTIPROC_DIR``), in plain in-process mode otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rq import Worker
from rq.job import Job
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import as_text

from .connections import SERIALIZER, queue
from .queues import ALL_QUEUES

if TYPE_CHECKING:
    from redis import Redis

    from .runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_COUNTS_KEY = "hdxrq:metrics:jobs"
JOB_DURATION_KEY = "hdxrq:metrics:job-seconds"
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

MetricSource = Callable[["Runtime"], Iterable[Metric]]


def register_metric_source(app: Flask, source: MetricSource) -> None:
    """Add a slice's scrape-time metrics (a function of the runtime yielding metric families)."""
    app.extensions.setdefault("hdx.metric_sources", []).append(source)


# --- recording job outcomes (called by the worker) ---


def observe_request(app: Flask, rule: str, method: str, status: int, seconds: float) -> None:
    """Time a request answered before Flask's dispatch (an express lane) like every other request."""
    latency: Histogram | None = app.extensions.get("hdx.http_latency")
    if latency is not None:
        latency.labels(rule, method, str(status)).observe(seconds)


def record_job(
    redis: Redis, *, queue: str, function: str, outcome: str, error_type: str, seconds: float | None
) -> None:
    """Count one ended job execution and add its duration to the histogram, in one round trip."""
    labels = f"{queue}|{function}"
    with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(JOB_COUNTS_KEY, f"{labels}|{outcome}|{error_type}", 1)
        if seconds is not None:
            for bound in JOB_DURATION_BUCKETS:
                if seconds <= bound:
                    pipe.hincrby(JOB_DURATION_KEY, f"{labels}|{bound}", 1)
            pipe.hincrby(JOB_DURATION_KEY, f"{labels}|+Inf", 1)
            pipe.hincrbyfloat(JOB_DURATION_KEY, f"{labels}|sum", seconds)
        pipe.execute()


# --- the endpoint ---


def init_app(app: Flask, runtime: Runtime) -> None:
    """Time every request and serve ``/metrics``."""
    registry = CollectorRegistry(auto_describe=True)
    latency = Histogram(
        "hdxrq_http_request_duration_seconds",
        "HTTP request latency by endpoint",
        ["endpoint", "method", "status"],
        buckets=HTTP_BUCKETS,
        registry=registry,
    )

    app.extensions["hdx.http_latency"] = latency

    @app.before_request
    def _start_timer() -> None:
        g.hdx_request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("hdx_request_started", None)
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            latency.labels(endpoint, request.method, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Metrics for Prometheus.

        Text exposition format: request latency per endpoint, queue lengths and the age of their oldest job,
        workers, job outcomes and durations, and each part's own metrics.
        """
        scrape = CollectorRegistry(auto_describe=False)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            MultiProcessCollector(scrape)
        else:
            scrape.register(_Forward(registry))
        scrape.register(ClusterCollector(app.extensions["hdx"], app.extensions.get("hdx.metric_sources", [])))
        return Response(generate_latest(scrape), mimetype=CONTENT_TYPE)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


class ClusterCollector(Collector):
    """Scrape-time metrics read from Redis."""

    def __init__(self, runtime: Runtime, sources: list[MetricSource]) -> None:
        self.runtime = runtime
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        redis = self.runtime.redis
        yield from queue_metrics(redis)
        yield worker_metrics(redis)
        yield from job_metrics(redis)
        for source in self.sources:
            yield from source(self.runtime)


def queue_metrics(redis: Redis) -> Iterator[Metric]:
    depth = GaugeMetricFamily("hdxrq_queue_jobs", "Jobs waiting in the queue", labels=["queue"])
    age = GaugeMetricFamily(
        "hdxrq_queue_oldest_job_age_seconds", "Age of the oldest waiting job (0 when empty)", labels=["queue"]
    )
    registries = GaugeMetricFamily(
        "hdxrq_queue_registry_jobs", "Jobs in the queue's registries", labels=["queue", "registry"]
    )
    now = datetime.now(UTC)
    for name in ALL_QUEUES:
        depth.add_metric([name], redis.llen(f"rq:queue:{name}"))
        age.add_metric([name], _oldest_job_age(redis, name, now))
        for registry_name, registry_class in (
            ("started", StartedJobRegistry),
            ("failed", FailedJobRegistry),
            ("scheduled", ScheduledJobRegistry),
            ("deferred", DeferredJobRegistry),
        ):
            registry = registry_class(name, connection=redis, serializer=SERIALIZER)
            registries.add_metric([name, registry_name], registry.count)
    yield from (depth, age, registries)


FRONT_JOBS_READ = 8
"""Jobs read at a queue's front for its oldest waiting job: jobs queued at the front (a geopreview callback,
a job put back) sit before the oldest one, but only a few at a time, since they are taken next."""


def _oldest_job_age(redis: Redis, queue: str, now: datetime) -> float:
    front = redis.lrange(f"rq:queue:{queue}", 0, FRONT_JOBS_READ - 1)
    if not front:
        return 0.0
    with redis.pipeline(transaction=False) as pipe:
        for job_id in front:
            pipe.hget(f"rq:job:{as_text(job_id)}", "enqueued_at")
        moments = [_utc(as_text(value)) for value in pipe.execute() if value]
    return max((max(0.0, (now - moment).total_seconds()) for moment in moments), default=0.0)


def _utc(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def worker_metrics(redis: Redis) -> Metric:
    workers = GaugeMetricFamily("hdxrq_workers", "Workers by state", labels=["state"])
    counts: dict[str, int] = {}
    for worker in Worker.all(connection=redis, serializer=SERIALIZER):
        state = str(worker.get_state())
        counts[state] = counts.get(state, 0) + 1
    for state, count in sorted(counts.items()):
        workers.add_metric([state], count)
    return workers


def job_metrics(redis: Redis) -> Iterator[Metric]:
    outcomes = CounterMetricFamily(
        "hdxrq_jobs", "Ended job executions", labels=["queue", "function", "outcome", "error_type"]
    )
    for field, count in sorted(redis.hgetall(JOB_COUNTS_KEY).items()):
        outcomes.add_metric(as_text(field).split("|"), int(count))
    yield outcomes
    yield _duration_histogram(redis.hgetall(JOB_DURATION_KEY))


def _duration_histogram(raw: Mapping[bytes | str, bytes | str]) -> Metric:
    histogram = HistogramMetricFamily("hdxrq_job_duration_seconds", "Job execution time", labels=["queue", "function"])
    series: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in raw.items():
        queue, function, key = as_text(field).split("|")
        series.setdefault((queue, function), {})[key] = float(value)
    for (queue, function), values in sorted(series.items()):
        buckets = [(str(bound), values.get(str(bound), 0.0)) for bound in JOB_DURATION_BUCKETS]
        buckets.append(("+Inf", values.get("+Inf", 0.0)))
        histogram.add_metric([queue, function], buckets, sum_value=values.get("sum", 0.0))
    return histogram


def pending_jobs_source(name: str, documentation: str, queue_name: str, functions: tuple[str, ...]) -> MetricSource:
    """A source counting jobs of ``functions`` waiting or scheduled for retry on ``queue_name``."""

    def collect(runtime: Runtime) -> Iterable[Metric]:
        redis = runtime.redis
        waiting = queue(queue_name, redis)
        ids = waiting.get_job_ids() + waiting.scheduled_job_registry.get_job_ids()
        jobs = Job.fetch_many(ids, connection=redis, serializer=SERIALIZER)
        gauge = GaugeMetricFamily(name, documentation, labels=["function"])
        for function in functions:
            gauge.add_metric([function], sum(1 for job in jobs if job is not None and job.func_name == function))
        yield gauge

    return collect
