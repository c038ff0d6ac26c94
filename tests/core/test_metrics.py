from __future__ import annotations

import subprocess
from collections.abc import Callable

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from core.connections import queue
from core.runtime import Runtime

RunCommand = Callable[..., subprocess.CompletedProcess[str]]


def scrape(client: FlaskClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for lbls, v in samples.get(name, []) if all(lbls.get(k) == w for k, w in labels.items())]
    assert matching, f"no {name} with {labels}"
    return sum(matching)


def test_queue_depth_and_age(client: FlaskClient, runtime: Runtime) -> None:
    queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "k", "v")
    queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "k", "w")

    samples = scrape(client)

    assert value(samples, "hdxrq_queue_jobs", queue="geo_q") == 2
    assert value(samples, "hdxrq_queue_jobs", queue="analytics_q") == 0
    assert value(samples, "hdxrq_queue_oldest_job_age_seconds", queue="geo_q") >= 0
    assert value(samples, "hdxrq_queue_oldest_job_age_seconds", queue="event_q") == 0
    assert value(samples, "hdxrq_queue_jobs", queue="tiles_q") == 0  # hdxrq's own queue is counted too


def test_the_oldest_job_is_found_behind_jobs_queued_at_the_front(client: FlaskClient, runtime: Runtime) -> None:
    waiting = queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "k", "import")
    runtime.redis.hset(waiting.key, "enqueued_at", "2026-01-01T00:00:00.000000Z")  # it has waited for months
    queue("geo_q", runtime.redis).enqueue("tests.jobs.record", "k", "callback", at_front=True)

    samples = scrape(client)

    assert value(samples, "hdxrq_queue_oldest_job_age_seconds", queue="geo_q") > 30 * 24 * 3600


def test_job_outcomes_and_durations_from_a_real_worker(
    client: FlaskClient, runtime: Runtime, worker_process: RunCommand
) -> None:
    queue("event_q", runtime.redis).enqueue("tests.jobs.record", "k", "v")
    queue("event_q", runtime.redis).enqueue("tests.jobs.fail", "broken")
    assert worker_process("worker", "--burst", "event_q").returncode == 0

    samples = scrape(client)

    ok = value(samples, "hdxrq_jobs_total", function="tests.jobs.record", outcome="success")
    failed = value(
        samples, "hdxrq_jobs_total", function="tests.jobs.fail", outcome="failure", error_type="RuntimeError"
    )
    assert (ok, failed) == (1, 1)
    assert value(samples, "hdxrq_job_duration_seconds_count", function="tests.jobs.record") == 1
    assert value(samples, "hdxrq_queue_registry_jobs", queue="event_q", registry="failed") == 1


def test_http_latency_by_endpoint(client: FlaskClient) -> None:
    client.get("/version")
    client.get("/version")
    client.get("/no/such/page")

    samples = scrape(client)

    assert value(samples, "hdxrq_http_request_duration_seconds_count", endpoint="/version", status="200") == 2
    assert value(samples, "hdxrq_http_request_duration_seconds_count", endpoint="unmatched", status="404") == 1


def test_slice_metrics_buffer_stream_and_callbacks(client: FlaskClient, runtime: Runtime) -> None:
    from analyticsapi import buffer, drain
    from analyticsapi.events import parse_event

    event = parse_event({"event_name": "x", "send_mixpanel": True, "mixpanel_token": "t", "mixpanel_tracking_id": "u"})
    drain.append(runtime.redis, event)
    runtime.redis.rpush(buffer.DEAD_LETTER_KEY, "{}")
    runtime.stream_redis.xadd(runtime.settings.event_bus.stream_name, {"event_type": "x", "body": "{}"})
    runtime.stream_redis.xgroup_create(runtime.settings.event_bus.stream_name, "notifications", id="0")
    queue("geo_q", runtime.redis).enqueue("importapi.tasks.send_callback", "r1", {"state": "success"})

    samples = scrape(client)

    assert value(samples, "hdxrq_analytics_buffer_events", sink="mixpanel") == 1
    assert value(samples, "hdxrq_analytics_dead_letter_events") == 1
    assert value(samples, "hdxrq_event_stream_length") == 1
    assert value(samples, "hdxrq_event_stream_group_lag", group="notifications") == 1
    assert value(samples, "hdxrq_geopreview_callbacks_pending", function="importapi.tasks.send_callback") == 1
    assert value(samples, "hdxrq_fs_check_callbacks_pending") == 0
