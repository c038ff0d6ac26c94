"""``./hdxrq.py events detect|tail|forward`` as real processes, and a downstream redis-py reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.runtime import Runtime
from eventsapi.bus import publish_events
from tests.conftest import HDXRQ_PY, ROOT
from tests.eventsapi.helpers import CASES, SAMPLES, assert_matches_expected, case_body, load_case
from tests.fakes import FakeService, Reply, json_reply

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
STREAM = "hdx_event_stream"
QUICK = ("--idle-exit", "--block-ms", "50")


def lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def publish_case(client: FlaskClient, burst_worker: Callable[..., bool], number: str) -> None:
    assert client.post("/api/create-change-events", json=case_body(number)).get_json() == {"state": "success"}
    assert burst_worker("event_q")


def pending_count(runtime: Runtime, group: str) -> int:
    return int(runtime.stream_redis.xpending(STREAM, group)["pending"])


# --- detect ---


@pytest.mark.parametrize("number", CASES)
def test_detect_prints_the_worker_events_without_redis(number: str, worker_process: RunCommand) -> None:
    _, _, expected = load_case(number)
    username = expected["request"]["body"]["username"]
    old, new = str(SAMPLES / f"case-{number}-old.json"), str(SAMPLES / f"case-{number}-new.json")

    done = worker_process(
        "events",
        "detect",
        old,
        new,
        "--username",
        username,
        extra_env={"REDIS_STREAM_PORT": "1", "HDX_REDIS_PORT": "1"},
    )

    assert done.returncode == 0, done.stderr
    assert_matches_expected(lines(done.stdout), expected["expected_events"])


def test_detect_explains_bad_input(worker_process: RunCommand, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    done = worker_process("events", "detect", str(bad), str(SAMPLES / "case-05-new.json"))
    assert done.returncode != 0
    assert "not JSON" in done.stderr and "Traceback" not in done.stderr


# --- a downstream consumer written with plain redis-py ---


def test_a_redis_py_consumer_group_reads_the_events(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool]
) -> None:
    redis = runtime.stream_redis
    redis.xgroup_create(STREAM, "qa-tickets", id="$", mkstream=True)
    publish_case(client, burst_worker, "01")
    publish_case(client, burst_worker, "07")

    seen = []
    for _stream, entries in redis.xreadgroup("qa-tickets", "worker-1", {STREAM: ">"}, count=10, block=100):
        for entry_id, fields in entries:
            if fields[b"event_type"] == b"resource-created":  # filter before decoding, as consumers do
                seen.append(json.loads(fields[b"body"])["resource_name"])
            redis.xack(STREAM, "qa-tickets", entry_id)

    assert seen == ["wfp_food_prices_afg.csv", "wfp_food_prices_afg_subnational.xlsx"]
    assert pending_count(runtime, "qa-tickets") == 0


# --- tail ---


def test_tail_prints_and_acks_every_event(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool], worker_process: RunCommand
) -> None:
    publish_case(client, burst_worker, "01")

    done = worker_process("events", "tail", "--from-start", "--group", "g", "--consumer", "c", *QUICK)

    assert done.returncode == 0, done.stderr
    printed = lines(done.stdout)
    assert [p["event_type"] for p in printed] == ["dataset-created", "resource-created", "resource-created"]
    assert [p["id"] for p in printed] == [entry_id.decode() for entry_id, _ in runtime.stream_redis.xrange(STREAM)]
    assert pending_count(runtime, "g") == 0

    again = worker_process("events", "tail", "--group", "g", "--consumer", "c", *QUICK)
    assert again.stdout == ""  # acked: a group never sees an entry twice


def test_tail_filters_by_type_and_stops_after_max_events(
    client: FlaskClient, runtime: Runtime, burst_worker: Callable[..., bool], worker_process: RunCommand
) -> None:
    publish_case(client, burst_worker, "01")

    done = worker_process("events", "tail", "--from-start", "--type", "resource-created", "--max-events", "1")

    assert done.returncode == 0, done.stderr
    assert [p["event"]["resource_id"] for p in lines(done.stdout)] == ["6b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"]


@pytest.fixture
def popen_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **settings_env}


@pytest.fixture
def killable() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_a_killed_tail_leaves_pending_entries_the_next_consumer_takes_over(
    runtime: Runtime, popen_env: dict[str, str], worker_process: RunCommand, killable: list[subprocess.Popen[str]]
) -> None:
    events = [{"event_type": "dataset-metadata-changed", "n": n, "padding": "x" * 1000} for n in range(300)]
    ids = publish_events(runtime.stream_redis, STREAM, events, request_id="bulk", maxlen=100000)
    first = subprocess.Popen(
        [
            sys.executable,
            HDXRQ_PY,
            "events",
            "tail",
            "--from-start",
            "--group",
            "g",
            "--consumer",
            "c1",
            "--batch-size",
            "300",
        ],
        env=popen_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    killable.append(first)
    # Reading one line proves c1 took the whole batch of 300; it then blocks on the full pipe, mid-batch.
    assert json.loads(first.stdout.readline())["id"] == ids[0]
    first.kill()
    first.wait(timeout=30)
    printed_by_first = {ids[0]} | {p["id"] for p in _whole_lines(first.stdout.read())}
    left_pending = {p["message_id"].decode() for p in runtime.stream_redis.xpending_range(STREAM, "g", "-", "+", 1000)}
    assert left_pending and len(printed_by_first) < len(ids)

    second = worker_process("events", "tail", "--group", "g", "--consumer", "c2", "--claim-idle-ms", "0", *QUICK)

    assert second.returncode == 0, second.stderr
    taken_over = [p["id"] for p in lines(second.stdout)]
    assert left_pending <= set(taken_over) and taken_over == sorted(
        taken_over, key=lambda i: tuple(map(int, i.split("-")))
    )
    assert pending_count(runtime, "g") == 0
    assert printed_by_first | set(taken_over) == set(ids)  # at least once: nothing lost


def _whole_lines(output: str) -> list[Any]:
    whole = []
    for line in output.splitlines():
        try:
            whole.append(json.loads(line))
        except ValueError:
            pass  # the line the kill cut short
    return whole


# --- forward ---


@pytest.fixture
def webhook() -> Iterator[FakeService]:
    with FakeService("fake-webhook") as service:
        yield service


def test_forward_posts_batches_and_acks_after_a_2xx(
    client: FlaskClient,
    runtime: Runtime,
    burst_worker: Callable[..., bool],
    worker_process: RunCommand,
    webhook: FakeService,
) -> None:
    webhook.route("POST", "/hook", json_reply({"ok": True}))
    webhook.script("POST", "/hook", Reply(status=503, body={"error": "busy"}))  # one transient failure
    publish_case(client, burst_worker, "01")

    done = worker_process(
        "events", "forward", "--webhook", f"{webhook.url}/hook", "--from-start", "--backoff", "0", *QUICK
    )

    assert done.returncode == 0, done.stderr
    calls = webhook.calls_to("/hook")
    assert len(calls) == 2 and calls[0].body == calls[1].body
    posted = calls[1].json()["events"]
    assert [e["event_type"] for e in posted] == ["dataset-created", "resource-created", "resource-created"]
    assert pending_count(runtime, "hdxrq-forward") == 0
    assert not runtime.stream_redis.exists(STREAM + ":dead-letter")


def test_forward_moves_entries_that_keep_failing_to_the_dead_letter_stream(
    client: FlaskClient,
    runtime: Runtime,
    burst_worker: Callable[..., bool],
    worker_process: RunCommand,
    webhook: FakeService,
) -> None:
    webhook.route("POST", "/hook", Reply(status=500, body={"error": "down"}))
    publish_case(client, burst_worker, "07")
    publish_case(client, burst_worker, "05")
    source_ids = [entry_id.decode() for entry_id, _ in runtime.stream_redis.xrange(STREAM)]

    done = worker_process(
        "events",
        "forward",
        "--webhook",
        f"{webhook.url}/hook",
        "--from-start",
        "--retries",
        "1",
        "--backoff",
        "0",
        "--max-deliveries",
        "2",
        "--claim-idle-ms",
        "0",
        *QUICK,
    )

    assert done.returncode == 0, done.stderr
    dead = [
        {k.decode(): v.decode() for k, v in f.items()} for _, f in runtime.stream_redis.xrange(STREAM + ":dead-letter")
    ]
    assert [d["source_id"] for d in dead] == source_ids
    assert [d["event_type"] for d in dead] == ["dataset-deleted", "resource-data-changed"]
    assert json.loads(dead[0]["body"])["event_type"] == "dataset-deleted"
    assert pending_count(runtime, "hdxrq-forward") == 0
    # 1 batch of 2 (2 attempts), then each entry alone once more (2 attempts each) before the dead letter.
    assert len(webhook.calls_to("/hook")) == 2 + 2 * 2
