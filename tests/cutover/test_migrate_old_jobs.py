"""``./hdxrq.py migrate-old-jobs``: the old service's pickled jobs become hdxrq jobs with the same meaning.

Jobs are written as the old service wrote them (tests/oldservice.py: rq 1.13's pickle layout, rq-scheduler
0.13's schedule), migrated with the real command, then run by a real ``./hdxrq.py worker --burst``: the
import lands in PostGIS and CKAN is told, the analytics event reaches Mixpanel, the change events reach the
stream, the file-structure check reaches CKAN, the scheduled call keeps its run time. The old CKAN token is
nowhere afterwards. A job whose pickle names a function or a class is reported, left as it was, and never
runs: not while it is read, not by a worker afterwards.
"""

from __future__ import annotations

import calendar
import collections
import datetime as dt
import json
import os
import pickle
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app import cutover
from core.runtime import Runtime
from eventsapi.detect import detect_events
from scheduler import store
from tests import oldservice
from tests.analyticsapi.conftest import example_payload
from tests.conftest import TEST_GIS_API_KEY
from tests.fakes import FakeCkan, FakeMixpanel, FakeService, Reply, json_reply
from tests.redisdump import everything_in
from tests.reliability.events import change_request
from tests.waiting import wait_until

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
GEOJSON = b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"a"},"geometry":{"type":"Point","coordinates":[1,2]}}]}'  # noqa: E501
SOURCE_INFO = {"url_or_filename": "f.csv", "format": "CSV", "sheets": [{"name": "S", "nrows": 1, "ncols": 1}]}


@pytest.fixture
def outside() -> Iterator[tuple[FakeMixpanel, FakeService]]:
    with FakeMixpanel() as mixpanel, FakeService("files-and-hxl-proxy") as files:
        files.route("GET", "/files/points.geojson", Reply(body=GEOJSON))
        files.route("GET", "/api/source-info", json_reply(SOURCE_INFO))
        yield mixpanel, files


@pytest.fixture
def settings_env(settings_env: dict[str, str], outside: tuple[FakeMixpanel, FakeService]) -> dict[str, str]:
    return {**settings_env, "MIXPANEL_API_URL": outside[0].url, "HDXRQ_ANALYTICS_DRAIN_IDLE_SEC": "0"}


@pytest.fixture
def migrate(runtime: Runtime) -> Callable[..., tuple[int, str]]:
    """Run the ``migrate-old-jobs`` command in this process with the test's runtime: exit status and output."""

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cutover.migrate_old_jobs, list(args), obj=runtime, catch_exceptions=False)
        return result.exit_code, result.output

    return run


def old_jobs_of_every_kind(runtime: Runtime, files: FakeService) -> dict[str, Any]:
    """One job per queue of the old service, plus two scheduled calls (one due, one an hour away)."""
    redis = runtime.redis
    resource = str(uuid.uuid4())
    url = f"{files.url}/files/points.geojson"
    change = change_request(7)
    analytics = example_payload(1)
    call = {"action": "hdx_refresh_stats", "method": "post", "sch_minutes": 60, "api_params": {"id": "ds-1"}}
    due_call = {**call, "api_params": {"id": "ds-due"}, "sch_minutes": 0}
    later = dt.timedelta(hours=1)
    return {
        "resource": resource,
        "change": change,
        "analytics": analytics,
        "ids": [
            oldservice.enqueue(redis, "geo_q", oldservice.IMPORT, oldservice.import_task("ds-1", resource, url)),
            oldservice.enqueue(redis, "analytics_q", oldservice.ANALYTICS, analytics),
            oldservice.enqueue(redis, "event_q", oldservice.EVENTS, change),
            oldservice.enqueue(
                redis,
                "fs_check_q",
                oldservice.FS_CHECK,
                oldservice.fs_check_task("ds-1", resource, f"{files.url}/api/source-info", "[]"),
            ),
            oldservice.enqueue_in(redis, later, oldservice.scheduler_task(call, later)),
            oldservice.enqueue_in(redis, -dt.timedelta(minutes=5), oldservice.scheduler_task(due_call, later)),
        ],  # fmt: skip
        "later": calendar.timegm((dt.datetime.now(dt.UTC) + later).utctimetuple()),
    }


def test_every_kind_of_old_job_is_migrated_once_and_does_its_work(
    runtime: Runtime,
    migrate: Callable[..., tuple[int, str]],
    worker_process: RunCommand,
    fake_ckan: FakeCkan,
    outside: tuple[FakeMixpanel, FakeService],
    pg: Any,
) -> None:
    mixpanel, files = outside
    fake_ckan.on_action("hdx_refresh_stats", json_reply({"success": True, "result": {}}))
    old = old_jobs_of_every_kind(runtime, files)
    scheduled_at = runtime.redis.zscore("rq:scheduler:scheduled_jobs", old["ids"][4])
    change_queued_at = runtime.redis.hget(f"rq:job:{old['ids'][2]}", "enqueued_at").decode()

    dry = worker_process("migrate-old-jobs", "--dry-run")  # once as operators run it: ./hdxrq.py
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would migrate") == 7 and "dry run: 6 would migrate" in dry.stdout

    status, done = migrate()
    assert status == 0, done
    assert "6 migrated" in done
    for job_id in old["ids"]:  # gone from the old queues and schedule, record and all
        assert not runtime.redis.exists(f"rq:job:{job_id}")
    assert runtime.redis.zcard("rq:scheduler:scheduled_jobs") == 0
    status, again = migrate()
    assert status == 0 and "no job of the old service found" in again, again  # nothing twice

    # The door schedules the due call at the next whole second (rq's scheduler counts whole seconds): a burst
    # worker started before that second would find it not yet due and leave without it.
    [due_schedule] = [s for s in store.all_schedules(runtime.redis) if s.spec.api_params == {"id": "ds-due"}]
    wait_until(lambda: time.time() >= due_schedule.next_tick, 5, "the migrated due call's run time")
    work = worker_process("worker", "--burst", "--with-scheduler")
    assert work.returncode == 0, work.stderr[-3000:]

    [callback] = fake_ckan.action_calls("hdx_resource_update_metadata")
    assert callback.json()["id"] == old["resource"]
    assert json.loads(callback.json()["shape_info"])["state"] == "success"
    assert callback.header("Authorization") == TEST_GIS_API_KEY  # hdxrq's token, never the old one
    [event] = mixpanel.imported_events()
    assert event["event"] == old["analytics"]["event_name"]
    published = [json.loads(fields[b"body"]) for _, fields in runtime.stream_redis.xrange("hdx_event_stream")]
    body = old["change"]
    expected = detect_events(body["old_dataset_dict"], body["new_dataset_dict"], body["username"], "t")
    assert [e["event_type"] for e in published] == [e["event_type"] for e in expected] and expected
    assert {e["event_time"] for e in published} == {change_queued_at.removesuffix("Z")}  # the write's time
    [check] = fake_ckan.action_calls("hdx_fs_check_resource_revise")
    assert check.json()["id"] == old["resource"] and check.json()["value"]["state"] == "success"
    [due] = fake_ckan.action_calls("hdx_refresh_stats")  # the due call ran; the later one waits
    assert due.json() == {"id": "ds-due"} and due.header("Authorization") == TEST_GIS_API_KEY
    [waiting] = [s for s in store.all_schedules(runtime.redis) if s.spec.api_params == {"id": "ds-1"}]
    assert scheduled_at == old["later"]
    assert abs(waiting.next_tick - scheduled_at) <= 1  # the old run time (to the second the clock ticks over)
    assert oldservice.OLD_TOKEN not in everything_in(runtime.redis) + everything_in(runtime.stream_redis)


class RunsACommand:
    """Unpickling this with pickle's defaults runs ``os.system``: what a hostile Redis writer would plant."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def test_a_pickle_naming_a_function_or_class_is_reported_left_alone_and_never_run(
    runtime: Runtime, migrate: Callable[..., tuple[int, str]], worker_process: RunCommand, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    planted = {
        "dataset_id": "d",
        "resource_id": "r",
        "download_url": "http://x/",
        "hook": RunsACommand(f"touch {marker}"),
    }
    evil = pickle.dumps((oldservice.IMPORT, None, [planted], {}), protocol=pickle.HIGHEST_PROTOCOL)
    ordered = pickle.dumps((oldservice.ANALYTICS, None, [collections.OrderedDict(event_name="x")], {}))
    redis = runtime.redis
    evil_id = oldservice.enqueue(redis, "geo_q", oldservice.IMPORT, {}, data=evil)
    class_id = oldservice.enqueue(redis, "analytics_q", oldservice.ANALYTICS, {}, data=ordered)
    records = {job_id: redis.hgetall(f"rq:job:{job_id}") for job_id in (evil_id, class_id)}

    status, output = migrate()

    assert status == 1, output
    assert f"not migrated      geo_q               {evil_id}" in output
    assert "its pickle names posix.system, which is not plain data" in output
    assert "its pickle names collections.OrderedDict, which is not plain data" in output
    assert not marker.exists()
    for job_id, record in records.items():  # left as they were, off the queues no worker reads them from
        assert redis.hgetall(f"rq:job:{job_id}") == record
        assert json.loads(redis.hget(cutover.REFUSED_KEY, job_id))["was_in"].startswith("rq:queue:")
    assert redis.llen("rq:queue:geo_q") == redis.llen("rq:queue:analytics_q") == 0
    work = worker_process("worker", "--burst", "--with-scheduler")
    assert work.returncode == 0, work.stderr[-3000:]
    assert not marker.exists()
    status, again = migrate()
    assert status == 0 and again.count("refused earlier") == 3, again  # two lines and the summary


def test_a_call_carrying_the_old_token_in_its_parameters_is_not_carried_over(
    runtime: Runtime, migrate: Callable[..., tuple[int, str]]
) -> None:
    call = {"action": "package_patch", "method": "post", "api_params": {"id": "x", "key": oldservice.OLD_TOKEN}}
    later = dt.timedelta(minutes=10)
    oldservice.enqueue_in(runtime.redis, later, oldservice.scheduler_task(call, later))

    status, output = migrate()

    assert status == 1, output
    assert "contains a credential of the old service or of hdxrq" in output
    assert oldservice.OLD_TOKEN not in output
    assert store.all_schedules(runtime.redis) == []


def test_nothing_is_changed_while_the_old_service_still_runs(
    runtime: Runtime, migrate: Callable[..., tuple[int, str]]
) -> None:
    oldservice.enqueue(runtime.redis, "event_q", oldservice.EVENTS, change_request(1))
    runtime.redis.set(cutover.OLD_SCHEDULER_LOCK, "old-host", ex=60)
    before = everything_in(runtime.redis)

    status, refused = migrate()
    assert status == 1 and "stop the old service first: rq-scheduler holds" in refused, refused
    status, planned = migrate("--dry-run")
    assert status == 0 and "1 would migrate" in planned, planned
    assert everything_in(runtime.redis) == before


def test_a_job_the_old_workers_had_started_is_migrated_and_hdxrqs_own_entries_are_not_touched(
    runtime: Runtime, migrate: Callable[..., tuple[int, str]]
) -> None:
    redis = runtime.redis
    interrupted = oldservice.enqueue(redis, "event_q", oldservice.EVENTS, change_request(3))
    redis.lrem("rq:queue:event_q", 0, interrupted)  # as rq 1.13's worker moves a job it starts
    redis.zadd("rq:wip:event_q", {interrupted: 1_900_000_000, "change-events-abc:execution-1": 1_900_000_000})

    status, output = migrate()

    assert status == 0, output
    assert f"migrated          event_q             {interrupted}" in output and "1 migrated" in output
    assert redis.zrange("rq:wip:event_q", 0, -1) == [b"change-events-abc:execution-1"]
    assert redis.llen("rq:queue:event_q") == 1  # the new change-events job
