"""Who may call what (docs/access.md), for every operation through every entrance: a refused caller and
an allowed one, and the door's declaration is the documented one.

The API allows the network 10.9.9.0/24 (``HDXRQ_ALLOWED_NETWORKS``). A caller at 192.0.2.50 is outside it,
one at 10.9.9.5 inside; either may present the admin token or a notifier token (``HDXRQ_NOTIFIER_TOKENS``),
which admits CKAN's notifications from anywhere and nothing else. A refused call changes nothing; an allowed
one does what the endpoint promises (its success answer, a job queued).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import analyticsapi.service
import eventsapi.service
import importapi.service
import scheduler.service
from app.factory import create_app
from app.settings import Settings
from core.auth import OPERATOR, Access, access_of
from core.runtime import Runtime
from tests.conftest import ROOT, TEST_ADMIN_TOKEN

OUTSIDE, INSIDE = "192.0.2.50", "10.9.9.5"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
NOTIFIER_TOKEN = "notifier-token-for-ckan"
NOTIFIER = {"Authorization": f"Bearer {NOTIFIER_TOKEN}"}
DOORS = (importapi.service, analyticsapi.service, eventsapi.service, scheduler.service)
URL = "http://files.example.org/file.geojson"
EVENT = {"event_name": "resource download", "send_mixpanel": True, "mixpanel_token": "t", "mixpanel_tracking_id": "u"}
DATASET = {"type": "dataset", "name": "d", "id": "c0ffee00-0000-4000-8000-000000000001", "resources": []}
CHANGE = {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": DATASET}


@pytest.fixture
def guarded(settings_env: dict[str, str]) -> Iterator[tuple[Flask, Runtime]]:
    """The API with an allowed network, and its runtime."""
    guards = {"HDXRQ_ALLOWED_NETWORKS": "10.9.9.0/24", "HDXRQ_NOTIFIER_TOKENS": NOTIFIER_TOKEN}
    runtime = Runtime(Settings.from_env({**settings_env, **guards}))
    yield create_app(runtime=runtime), runtime
    runtime.close()


def _schedule(rt: Runtime) -> str:
    return scheduler.service.add_schedule(rt, OPERATOR, {"action": "package_show", "sch_minutes": 60}).id


def _job(rt: Runtime) -> str:
    return eventsapi.service.accept_change_events(rt, OPERATOR, json.dumps(CHANGE).encode())


def json_is(expected: dict[str, Any]) -> Callable[[TestResponse], bool]:
    return lambda response: response.status_code == 200 and response.get_json() == expected


def has(**expected: Any) -> Callable[[TestResponse], bool]:
    return lambda response: response.status_code == 200 and expected.items() <= response.get_json().items()


def status(code: int) -> Callable[[TestResponse], bool]:
    return lambda response: response.status_code == code


@dataclass(frozen=True)
class Entrance:
    """One operation through one entrance: the request (``{resource}`` in the path: a fresh resource id,
    ``{id}``: what ``prepare`` made) and whether its answer says the operation ran."""

    name: str
    access: Access
    method: str
    path: str
    done: Callable[[TestResponse], bool]
    body: Any = None
    prepare: Callable[[Runtime], str] | None = None

    def send(self, client: FlaskClient, path: str, headers: dict[str, str], address: str) -> TestResponse:
        return client.open(
            path, method=self.method, json=self.body, headers=headers, environ_base={"REMOTE_ADDR": address}
        )

    def url(self, rt: Runtime) -> str:
        return self.path.format(resource=uuid.uuid4(), id=self.prepare(rt) if self.prepare else "")


def executing(name: str, access: Access, process_id: str, inputs: dict[str, Any]) -> Entrance:
    """The operation through the OGC execution of ``process_id``: 201 when the job was queued."""
    return Entrance(name, access, "POST", f"/processes/{process_id}/execution", status(201), body={"inputs": inputs})


DELETED, DRY_RUN = has(state="started"), has(**{"dry-run": True})
ENTRANCES = [
    Entrance(
        "request_import via add-layer",
        Access.NOTIFIER,
        "GET",
        f"/api/add-layer/dataset/d1/resource/{{resource}}?resource_download_url={URL}",
        has(state="processing"),
    ),
    executing(
        "request_import via geopreview-import", Access.NOTIFIER, "geopreview-import", {"resource_id": "r9", "url": URL}
    ),
    Entrance("delete_one_layer via delete-one-layer", Access.NOTIFIER, "POST", "/api/delete-one-layer/r1", DELETED),
    Entrance("list_orphaned_layers via delete-layers", Access.NOTIFIER, "GET", "/api/delete-layers", DRY_RUN),
    Entrance(
        "list_orphaned_layers via delete-layers/dry-run",
        Access.NOTIFIER,
        "GET",
        "/api/delete-layers/dry-run/true",
        DRY_RUN,
    ),
    Entrance(
        "delete_orphaned_layers via delete-layers/dry-run/false",
        Access.ADMIN,
        "GET",
        "/api/delete-layers/dry-run/false",
        has(**{"dry-run": False}),
    ),
    Entrance(
        "accept_event via send-analytics",
        Access.NOTIFIER,
        "POST",
        "/api/send-analytics",
        json_is({"success": True}),
        body=EVENT,
    ),
    executing("submit_event via analytics-send", Access.NOTIFIER, "analytics-send", EVENT),
    Entrance(
        "accept_change_events via create-change-events",
        Access.NOTIFIER,
        "POST",
        "/api/create-change-events",
        json_is({"state": "success"}),
        body=CHANGE,
    ),
    executing("accept_change_events via change-detection", Access.NOTIFIER, "change-detection", CHANGE),
    Entrance(
        "request_file_structure_check via file-structure-check",
        Access.NOTIFIER,
        "POST",
        "/api/file-structure-check/dataset/d1/resource/r1",
        json_is({"success": True}),
        body={"hxl_proxy_source_info_url": URL},
    ),
    executing(
        "request_file_structure_check via the file-structure-check process",
        Access.NOTIFIER,
        "file-structure-check",
        {"dataset_id": "d1", "resource_id": "r1", "hxl_proxy_source_info_url": URL},
    ),
    Entrance(
        "add_schedule via add_job",
        Access.ADMIN,
        "POST",
        "/api/scheduler/add_job",
        has(success=True),
        body={"action": "package_show", "sch_minutes": 5},
    ),
    executing(
        "call_now via ckan-call",
        Access.ADMIN,
        "ckan-call",
        {"action": "package_show", "method": "get", "api_params": {"id": "d1"}},
    ),
    Entrance("list_schedules via list_jobs", Access.ADMIN, "GET", "/api/scheduler/list_jobs", has(success=True)),
    Entrance(
        "cancel_schedule via scheduler/jobs",
        Access.ADMIN,
        "DELETE",
        "/api/scheduler/jobs/{id}",
        has(success=True),
        prepare=_schedule,
    ),
    Entrance("the job list", Access.ADMIN, "GET", "/jobs", status(200)),
    Entrance("a job's log", Access.ADMIN, "GET", "/jobs/{id}/log", status(200), prepare=_job),
    Entrance(
        "a job's results",
        Access.ADMIN,
        "GET",
        "/jobs/{id}/results",
        lambda response: response.status_code == 404 and response.get_json()["type"].endswith("result-not-ready"),
        prepare=_job,
    ),
    Entrance("dismissing a job", Access.ADMIN, "DELETE", "/jobs/{id}", has(status="dismissed"), prepare=_job),
    Entrance("a job's status", Access.ANYONE, "GET", "/jobs/{id}", has(status="accepted"), prepare=_job),
]


def refusals(entrance: Entrance) -> list[tuple[str, dict[str, str]]]:
    """The callers a door with this access refuses: (address, headers)."""
    wrong = {"Authorization": "Bearer not-the-token"}
    if entrance.access is Access.ADMIN:
        return [(INSIDE, {}), (OUTSIDE, wrong), (INSIDE, NOTIFIER)]
    if entrance.access is Access.NOTIFIER:
        return [(OUTSIDE, {}), (OUTSIDE, wrong)]
    return []


def admissions(entrance: Entrance) -> list[tuple[str, dict[str, str]]]:
    """The callers it lets in."""
    if entrance.access is Access.ADMIN:
        return [(OUTSIDE, ADMIN)]
    if entrance.access is Access.NOTIFIER:
        return [(INSIDE, {}), (OUTSIDE, ADMIN), (OUTSIDE, NOTIFIER)]
    return [(OUTSIDE, {})]


@pytest.mark.parametrize("entrance", [e for e in ENTRANCES if e.access is not Access.ANYONE], ids=lambda e: e.name)
def test_a_caller_the_door_refuses_is_refused_and_nothing_is_queued(
    guarded: tuple[Flask, Runtime], entrance: Entrance
) -> None:
    flask_app, runtime = guarded
    client = flask_app.test_client()
    for address, headers in refusals(entrance):
        path = entrance.url(runtime)
        before = _queued(runtime)
        response = entrance.send(client, path, headers, address)
        expected = 401 if entrance.access is Access.ADMIN else 403
        assert response.status_code == expected, (address, headers, response.get_data(as_text=True))
        assert response.get_json().get("error_type") == ("unauthorized" if expected == 401 else "forbidden")
        assert not entrance.done(response)
        assert _queued(runtime) == before


@pytest.mark.parametrize("entrance", ENTRANCES, ids=lambda e: e.name)
def test_a_caller_the_door_admits_gets_the_operation_done(guarded: tuple[Flask, Runtime], entrance: Entrance) -> None:
    flask_app, runtime = guarded
    client = flask_app.test_client()
    for address, headers in admissions(entrance):
        response = entrance.send(client, entrance.url(runtime), headers, address)
        assert entrance.done(response), (address, headers, response.status_code, response.get_data(as_text=True))


def _queued(runtime: Runtime) -> int:
    """Every job record and schedule in the RQ Redis: a refused call adds none."""
    return len(runtime.redis.keys("rq:job:*")) + len(runtime.redis.keys("hdxrq:scheduler:schedule:*"))


def test_every_door_operation_is_in_the_table_with_the_access_it_declares() -> None:
    table = (ROOT / "docs" / "access.md").read_text()
    documented = {
        name: who.strip()
        for name, who in re.findall(r"^\| [^|]*\(`(\w+\.service\.\w+)`\) \|.*\| ([^|]+) \|$", table, re.MULTILINE)
    }
    declared = {
        f"{door.__name__}.{name}": access_of(function).value
        for door in DOORS
        for name, function in vars(door).items()
        if callable(function) and hasattr(function, "access") and function.__module__ == door.__name__
    }
    assert documented == declared
