"""``GET /jobs`` pages through rq's lists and registries: it never reads every job record for one page."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from core.auth import OPERATOR
from core.connections import queue
from core.runtime import Runtime
from eventsapi import service as events
from processes import status


def pages(client: FlaskClient, headers: dict[str, str], url: str) -> list[dict[str, Any]]:
    """Every page from ``url`` on, following ``next`` links."""
    found = []
    while url:
        page = client.get(url, headers=headers).get_json()
        found.append(page)
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return found


def change_request(runtime: Runtime) -> str:
    return events.accept_change_events(
        runtime, OPERATOR, b'{"username": "u", "old_dataset_dict": {}, "new_dataset_dict": {"type": "dataset"}}'
    )


def test_a_page_reads_a_bounded_number_of_records_and_the_next_link_goes_on(
    client: FlaskClient, admin_headers: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status, "MAX_SCANNED", 8)
    monkeypatch.setattr(status, "CHUNK", 4)
    older = change_request(runtime)
    for number in range(20):  # internal jobs (callbacks) on the same queue, newer than the first request
        queue("event_q", runtime.redis).enqueue("importapi.tasks.send_callback", f"r{number}", {}, None)
    newer = change_request(runtime)

    found = pages(client, admin_headers, "/jobs?limit=5")

    # 8 records a page: the newest request and 7 callbacks, 8 callbacks, the last 5 and the oldest request
    assert [[job["jobID"] for job in page["jobs"]] for page in found] == [[newer], [], [older]]


def test_status_and_process_narrow_the_pages(
    client: FlaskClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    waiting = change_request(runtime)
    fs_check = events.request_file_structure_check(runtime, OPERATOR, "d", "r", "http://proxy.example/x", "[]")

    accepted = pages(client, admin_headers, "/jobs?status=accepted&processID=change-detection")
    running = pages(client, admin_headers, "/jobs?status=running")
    checks = pages(client, admin_headers, "/jobs?processID=file-structure-check")

    assert [job["jobID"] for page in accepted for job in page["jobs"]] == [waiting]
    assert [job for page in running for job in page["jobs"]] == []
    assert [job["jobID"] for page in checks for job in page["jobs"]] == [fs_check]
