"""A real ``./hdxrq.py worker`` SIGKILLed in the middle of a batch loses no event; a new worker sends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from analyticsapi import buffer, drain
from core.procs import descendants
from core.runtime import Runtime
from tests.conftest import HDXRQ_PY, ROOT
from tests.fakes import FakeMixpanel, Reply
from tests.waiting import wait_until

EVENTS = 40


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # Short lease so that the test does not wait long for the killed sender's lease to expire.
    return {**settings_env, "HDXRQ_ANALYTICS_HTTP_TIMEOUT_SEC": "3", "HDXRQ_ANALYTICS_LEASE_SEC": "6"}


@pytest.fixture
def start_worker(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "workers.log"

    def start() -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", ""), **settings_env}
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, HDXRQ_PY, "worker", "analytics_q"],
                env=env,
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its descendants (rq's work horse runs in a session of its own)."""
    for pid in [*descendants(process.pid), process.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


def test_sigkill_mid_batch_loses_nothing(
    post_event, payloads, fake_mixpanel: FakeMixpanel, runtime: Runtime, start_worker
) -> None:
    for number in range(EVENTS):
        meta = {**payloads[number % 3]["mixpanel_meta"], "time": 1728288000.0 + number}
        post_event({**payloads[number % 3], "mixpanel_meta": meta})
    fake_mixpanel.script("POST", "/import", Reply(stall=True))

    first = start_worker()
    (stalled,) = fake_mixpanel.wait_for_calls("/import", 1, timeout=60)
    _kill_group(first)  # SIGKILL while the batch is in flight
    fake_mixpanel.release()
    sent_before = FakeMixpanel.events_in(stalled)
    assert len(sent_before) == EVENTS
    assert buffer.SinkBuffer(runtime.redis, "mixpanel").backlog() == EVENTS  # claimed, not popped

    lease_key = drain.lease_key("mixpanel")
    wait_until(lambda: not runtime.redis.exists(lease_key), 30, "the killed sender's lease to expire")
    second = start_worker()  # its start-up hook requests a drain
    calls = fake_mixpanel.wait_for_calls("/import", 2, timeout=60)
    wait_until(lambda: buffer.SinkBuffer(runtime.redis, "mixpanel").backlog() == 0, 30, "the buffer to empty")

    resent = [event for call in calls[1:] for event in FakeMixpanel.events_in(call)]
    ids_before = [e["properties"]["$insert_id"] for e in sent_before]
    assert sorted(e["properties"]["$insert_id"] for e in resent) == sorted(ids_before)  # same ids: counted once
    assert len(set(ids_before)) == EVENTS
    assert second.poll() is None
