"""Redis Sentinel failover under traffic: the primary is killed while imports, analytics events and change
events flow; the API and the workers carry on by themselves on the promoted replica, and every request the
API answered with success gets its import done, its change events on the stream, its analytics event
delivered to Mixpanel and GA4.

A real set-up (tests/sentinel.py): one primary, one replica and three sentinels, private processes on
free ports. Queues (db 1) and the event stream (db 2) both go through ``redis+sentinel://`` URLs with the data
nodes' password. The API (``serve``) and two ``worker --with-scheduler`` processes run without a supervisor:
the test checks at the end that the very same processes are alive and did the work after the failover.
The primary is SIGKILLed (a crashed host, not a graceful hand-over). The test prints the pause it caused
(``bench/failover_bench.py`` repeats it for figures).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.connections import queue
from tests.fakes import FakeCkan, FakeGa4, FakeMixpanel, FakeService, Reply
from tests.sentinel import DOWN_AFTER_MS, SentinelCluster

from . import hostile
from .conftest import Proc, serve_api, wait_until
from .events import change_request, expected_entries, stream_entries

EXAMPLES = Path(__file__).resolve().parents[1] / "analyticsapi" / "samples"  # copies of shared/examples
PASSWORD = "failover-" + uuid.uuid4().hex[:12]
RQ_DB, STREAM_DB = 1, 2
ROUND_SEC = 0.05
"""Pace of the traffic: a change event and an analytics event every 50 ms (CKAN's side is not a flood)."""
IMPORT_EVERY = 20
"""One add-layer per this many rounds (about one a second: each is three geo_q jobs)."""
AFTER_FAILOVER = 40
"""Requests of each kind the API must accept after the promotion before the traffic stops."""
DOWN_AFTER = int(os.environ.get("HDXRQ_TEST_SENTINEL_DOWN_AFTER_MS", DOWN_AFTER_MS))
"""``bench/failover_bench.py`` sets it to measure the pause with a production-like detection time."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path / "sentinel", password=PASSWORD, down_after_ms=DOWN_AFTER)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def outside() -> Iterator[tuple[FakeMixpanel, FakeGa4, FakeService]]:
    with FakeMixpanel() as mixpanel, FakeGa4() as ga4, FakeService("file-host") as files:
        files.route("GET", "/files/layer.geojson", Reply(body=hostile.VALID))
        yield mixpanel, ga4, files


@pytest.fixture
def settings_env(settings_env: dict[str, str], cluster: SentinelCluster, outside: tuple) -> dict[str, str]:
    mixpanel, ga4, _ = outside
    return {
        **settings_env,
        "HDXRQ_REDIS_URL": cluster.url(RQ_DB),
        "HDXRQ_STREAM_REDIS_URL": cluster.url(STREAM_DB),
        "MIXPANEL_API_URL": mixpanel.url,
        "GA4_ENDPOINT": ga4.endpoint,
        "GA4_MEASUREMENT_ID": "G-FAILOVER",
        "GA4_API_SECRET": "ga4-secret-failover",
        "HDXRQ_ANALYTICS_TICK_SEC": "1",
        "HDXRQ_ANALYTICS_RETRY_BASE_SEC": "0.2",
        "HDXRQ_ANALYTICS_RETRY_MAX_SEC": "1",
    }


@dataclass
class Answer:
    kind: str
    key: str
    sent: float
    answered: float
    ok: bool


@dataclass(eq=False)
class Traffic(threading.Thread):
    """CKAN's side: change events, analytics events and add-layer calls, one after another, until stopped."""

    base: str
    files: str
    analytics: dict
    answers: list[Answer] = field(default_factory=list)
    bodies: dict[str, dict] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        number = 0
        with httpx.Client(base_url=self.base, timeout=60) as http:
            while not self.stop.is_set():
                number += 1
                self._change(http, number)
                self._analytics(http, number)
                if number % IMPORT_EVERY == 0:
                    self._import(http)
                self.stop.wait(ROUND_SEC)

    def accepted(self, kind: str, after: float = 0.0) -> list[str]:
        return [a.key for a in self.answers if a.kind == kind and a.ok and a.answered > after]

    def unconfirmed(self, kind: str) -> list[str]:
        return [a.key for a in self.answers if a.kind == kind and not a.ok]

    def _call(self, kind: str, key: str, request: Callable[[], httpx.Response], ok: Callable[[dict], bool]) -> None:
        sent = time.monotonic()
        try:
            answer = request()
            success = answer.status_code == 200 and ok(answer.json())
        except httpx.HTTPError:
            success = False
        self.answers.append(Answer(kind, key, sent, time.monotonic(), success))

    def _change(self, http: httpx.Client, number: int) -> None:
        body = change_request(number)
        self.bodies[body["username"]] = body
        self._call("change", body["username"], lambda: http.post("/api/create-change-events", json=body),
                   lambda answer: answer == {"state": "success"})  # fmt: skip

    def _analytics(self, http: httpx.Client, number: int) -> None:
        marker = f"event-{number}-{uuid.uuid4().hex[:6]}"
        payload = {
            **self.analytics,
            "mixpanel_meta": {**self.analytics["mixpanel_meta"], "marker": marker},
            "ga_meta": {**self.analytics["ga_meta"], "el": marker},
            "send_ga": True,
        }
        self._call("analytics", marker, lambda: http.post("/api/send-analytics", json=payload),
                   lambda answer: answer == {"success": True})  # fmt: skip

    def _import(self, http: httpx.Client) -> None:
        resource_id = str(uuid.uuid4())
        params = {"resource_download_url": f"{self.files}/files/layer.geojson", "url_type": "upload"}
        self._call("import", resource_id, lambda: http.get(f"/api/add-layer/dataset/d/resource/{resource_id}",
                   params=params), lambda answer: answer["state"] == "processing")  # fmt: skip


def markers(texts: list[str]) -> set[str]:
    return set(re.findall(r"event-\d+-[0-9a-f]{6}", "\n".join(texts)))


def stream_pause(cluster: SentinelCluster) -> float:
    """The longest gap between consecutive change events on the stream (entry ids are the primary's ms clock)."""
    ids = [int(entry_id.split(b"-")[0]) for entry_id, _ in cluster.client(STREAM_DB).xrange("hdx_event_stream")]
    return max((b - a for a, b in zip(ids, ids[1:], strict=False)), default=0) / 1000


def test_sentinel_failover_loses_nothing_accepted(
    spawn: Callable[..., Proc],
    cluster: SentinelCluster,
    fake_ckan: FakeCkan,
    outside: tuple[FakeMixpanel, FakeGa4, FakeService],
) -> None:
    mixpanel, ga4, files = outside
    api, base = serve_api(spawn, {"HDXRQ_API_WORKERS": "2"})
    workers = [  # one per kind of work, so that no path waits behind another's jobs (a drain lasts seconds)
        spawn("worker", "--with-scheduler", *queues, name=queues[0])
        for queues in (("event_q",), ("analytics_q", "default_scheduler_q"), ("geo_q",))
    ]
    analytics = json.loads((EXAMPLES / "analytics-01-resource-download.json").read_text())["payload"]
    traffic = Traffic(base, files.url, analytics)
    traffic.start()
    stream = "hdx_event_stream"
    wait_until(lambda: cluster.client(STREAM_DB).xlen(stream) >= 20 and mixpanel.import_calls() and ga4.collect_calls()
               and fake_ckan.action_calls("hdx_resource_update_metadata"), 60, "work done on every path")  # fmt: skip

    killed_at = time.monotonic()
    old_port = cluster.kill_primary()
    cluster.wait_for_new_primary(old_port)
    promoted_at = time.monotonic()
    for kind in ("change", "analytics"):
        wait_until(lambda k=kind: len(traffic.accepted(k, after=promoted_at)) >= AFTER_FAILOVER, 60,
                   f"the API to accept {kind} requests on the new primary")  # fmt: skip
    wait_until(lambda: len(traffic.accepted("import", after=promoted_at)) >= 2, 60, "imports after the failover")
    traffic.stop.set()
    traffic.join(timeout=60)
    # rq's scheduler (a process of each worker, with a connection of its own) carries on too.
    with cluster.client(RQ_DB) as primary:
        queue("default_scheduler_q", primary).enqueue_in(timedelta(seconds=1), "tests.jobs.record", "after", "due")
        wait_until(lambda: primary.lrange("after", 0, -1) == [b"due"], 30, "a job scheduled after the failover")

    # Every change-event request answered with success: its events on the stream, nothing written twice
    # beyond requests whose answer was lost (at most once each).
    accepted = Counter(expected_entries([traffic.bodies[user] for user in traffic.accepted("change")]))
    unconfirmed = Counter(expected_entries([traffic.bodies[user] for user in traffic.unconfirmed("change")]))
    new_stream = cluster.client(STREAM_DB)
    wait_until(lambda: Counter(stream_entries(new_stream)) & accepted == accepted, 90, "every accepted change event")
    assert Counter(stream_entries(new_stream)) - accepted <= unconfirmed

    # Every analytics event answered with success: delivered to Mixpanel and to GA4.
    wanted = set(traffic.accepted("analytics"))
    wait_until(lambda: wanted <= markers([call.body.decode() for call in mixpanel.import_calls()]), 90,
               "every accepted analytics event at Mixpanel")  # fmt: skip
    wait_until(lambda: wanted <= markers([call.body.decode() for call in ga4.collect_calls()]), 90,
               "every accepted analytics event at GA4")  # fmt: skip

    # Every import answered with success: imported, and CKAN told so.
    imports = set(traffic.accepted("import"))

    def imported() -> set[str]:
        return {
            call.json()["id"] for call in fake_ckan.action_calls("hdx_resource_update_metadata")
            if json.loads(call.json()["shape_info"])["state"] == "success"
        }  # fmt: skip

    wait_until(lambda: imports <= imported(), 120, "every accepted import's success callback")

    # The same processes did it all: none died and was replaced.
    assert api.alive() and all(worker.alive() for worker in workers), [p.output()[-2000:] for p in workers]
    answers = [a for a in traffic.answers if a.answered > killed_at - 1]
    successes = sorted(a.answered for a in traffic.answers if a.ok)
    report = {
        "down_after_ms": DOWN_AFTER,
        "promoted_after_s": round(promoted_at - killed_at, 2),
        "api_pause_s": round(max(b - a for a, b in zip(successes, successes[1:], strict=False)), 2),
        "slowest_answer_s": round(max(a.answered - a.sent for a in answers), 2),
        "stream_pause_s": stream_pause(cluster),
        "refused": sum(not a.ok for a in traffic.answers),
        "accepted": {kind: len(traffic.accepted(kind)) for kind in ("change", "analytics", "import")},
    }
    print("\nfailover " + json.dumps(report))
