"""``./hdxrq.py schedule list|add|cancel`` as operators run it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from tests.conftest import TEST_GIS_API_KEY

from .conftest import SchedulerClock

RunCommand = Callable[..., subprocess.CompletedProcess[str]]
ListJobs = Callable[[], list[dict[str, Any]]]


def test_add_list_and_cancel_from_the_command_line(
    worker_process: RunCommand, list_jobs: ListJobs, clock: SchedulerClock
) -> None:
    added = worker_process("schedule", "add", "package_patch", "--params", '{"id": "abc"}', "--cron", "15 2 * * 1")
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.split()[0]
    [job] = list_jobs()
    assert job["id"] == schedule_id and job["schedule"]["cron"] == "15 2 * * 1"
    assert job["api_params"] == {"id": "abc"} and len(clock.pending_job_ids()) == 1

    table = worker_process("schedule", "list")
    as_json = worker_process("schedule", "list", "--json")
    assert schedule_id in table.stdout and "POST package_patch on cron '15 2 * * 1' (UTC)" in table.stdout
    assert json.loads(as_json.stdout)["jobs"][0]["id"] == schedule_id

    cancelled = worker_process("schedule", "cancel", schedule_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert list_jobs() == [] and clock.pending_job_ids() == []
    assert "No scheduled CKAN calls." in worker_process("schedule", "list").stdout
    for output in (added, table, as_json, cancelled):
        assert TEST_GIS_API_KEY not in output.stdout + output.stderr


def test_the_command_line_refuses_what_the_api_refuses(worker_process: RunCommand, list_jobs: ListJobs) -> None:
    bad_action = worker_process("schedule", "add", "package_patch;rm", "--every", "5")
    bad_params = worker_process("schedule", "add", "package_patch", "--params", "{not json")
    unknown = worker_process("schedule", "cancel", "0123456789abcdef0123456789abcdef")

    assert bad_action.returncode != 0
    assert "Could not schedule job: action must be a CKAN action name" in bad_action.stderr
    assert bad_params.returncode != 0 and "not JSON" in bad_params.stderr
    assert unknown.returncode != 0 and "No scheduled job" in unknown.stderr
    assert list_jobs() == []
