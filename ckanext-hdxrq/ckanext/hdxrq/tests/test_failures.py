"""hdxrq down, slow or refusing: the user's save succeeds; the failure is logged and counted."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from ckan.tests import factories
from ckan.tests.helpers import call_action
from click.testing import CliRunner

from .. import cli
from .conftest import ADD_LAYER, CHANGE_EVENTS, FakeHdxrq, fakes

pytestmark = pytest.mark.usefixtures("site")

GEO_RESOURCES = [
    {"url": "https://x.org/a.geojson", "format": "GeoJSON"},
    {"url": "https://x.org/b.kml", "format": "KML"},
]
TOKEN = "secret-hdxrq-token-1f4e"


def status() -> dict[str, Any]:
    return call_action("hdxrq_status_show", {"user": factories.Sysadmin()["name"], "ignore_auth": False})


def closed_port() -> int:
    """A port nothing listens on (bound and released, so connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="ckanext.hdxrq")
    return caplog


def test_hdxrq_down_the_save_succeeds_and_the_failures_are_counted(
    ckan_config: Any, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(ckan_config, "ckanext.hdxrq.url", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setitem(ckan_config, "ckanext.hdxrq.token", TOKEN)

    dataset = factories.Dataset(name="saved", resources=GEO_RESOURCES)

    assert call_action("package_show", id="saved")["id"] == dataset["id"]
    counted = status()
    assert counted["failures"] == {"create-change-events": 1, "add-layer": 2}
    assert counted["pending"] == 3  # parked, to be sent again
    assert "ConnectionError" in counted["last_failures"]["add-layer"]["message"]
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all(dataset["id"] in message for message in warnings)
    assert TOKEN not in logs.text and TOKEN not in str(counted)


@pytest.mark.ckan_config("ckanext.hdxrq.timeout", "0.5")
def test_hdxrq_too_slow_the_save_waits_one_timeout_and_succeeds(hdxrq: FakeHdxrq) -> None:
    hdxrq.route("POST", CHANGE_EVENTS, fakes.Reply(stall=True))

    factories.Dataset(name="saved", resources=GEO_RESOURCES)

    assert call_action("package_show", id="saved")["name"] == "saved"
    assert len(hdxrq.calls) == 1  # after one call without an answer, the rest are counted, not tried
    assert status()["failures"] == {"create-change-events": 1, "add-layer": 2}
    assert "ReadTimeout" in status()["last_failures"]["create-change-events"]["message"]


def test_a_refusal_or_an_error_status_is_counted_and_the_rest_still_sent(hdxrq: FakeHdxrq) -> None:
    refusal = {"state": "failure", "message": "Redis is down", "error_type": "transformation-init-problem"}
    hdxrq.add_layer_reply = fakes.json_reply(refusal)
    hdxrq.route("POST", CHANGE_EVENTS, fakes.json_reply({"error": "boom"}, 500))

    factories.Dataset(resources=GEO_RESOURCES)

    assert len(hdxrq.calls) == 3
    counted = status()
    assert counted["failures"] == {"create-change-events": 1, "add-layer": 2}
    assert "Redis is down" in counted["last_failures"]["add-layer"]["message"]
    assert counted["pending"] == 0  # hdxrq answered: it would refuse them again
    assert "HTTP 500" in counted["last_failures"]["create-change-events"]["message"]


@pytest.mark.ckan_config("ckanext.hdxrq.token", TOKEN)
def test_the_token_is_sent_as_a_bearer_token(hdxrq: FakeHdxrq) -> None:
    factories.Dataset(resources=GEO_RESOURCES[:1])
    assert {call.header("authorization") for call in hdxrq.calls} == {f"Bearer {TOKEN}"}
    assert {call.header("user-agent") for call in hdxrq.calls} == {"ckanext-hdxrq/0.1.0"}


def sent(hdxrq: FakeHdxrq) -> list[tuple[str, str]]:
    """(endpoint, dataset name or resource url) of every notification hdxrq received, in order."""
    seen = []
    for call in hdxrq.calls:
        if call.path == CHANGE_EVENTS:
            seen.append(("events", call.json()["new_dataset_dict"]["name"]))
        elif call.path.startswith(ADD_LAYER):
            seen.append(("add-layer", call.query["resource_download_url"][0]))
    return seen


def test_what_hdxrq_missed_while_down_goes_out_first_with_the_next_save(
    hdxrq: FakeHdxrq, ckan_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ckan_config, "ckanext.hdxrq.url", f"http://127.0.0.1:{closed_port()}")
    factories.Dataset(name="while-down", resources=GEO_RESOURCES)
    assert status()["pending"] == 3

    monkeypatch.setitem(ckan_config, "ckanext.hdxrq.url", hdxrq.url)
    factories.Dataset(name="back-up")

    assert sent(hdxrq) == [
        ("events", "while-down"),
        ("add-layer", "https://x.org/a.geojson"),
        ("add-layer", "https://x.org/b.kml"),
        ("events", "back-up"),
    ]
    assert status()["pending"] == 0


def test_unavailable_parks_the_rest_behind_it_and_resend_delivers_them_in_order(hdxrq: FakeHdxrq) -> None:
    hdxrq.route("POST", CHANGE_EVENTS, fakes.json_reply({"error": "starting"}, 503))
    factories.Dataset(name="first", resources=GEO_RESOURCES[:1])
    factories.Dataset(name="second")

    # the second save tried the oldest parked notification again, then queued its own behind it, untried
    assert sent(hdxrq) == [("events", "first"), ("events", "first")]
    assert status()["pending"] == 3

    still_down = CliRunner().invoke(cli.resend)
    assert still_down.exit_code == 1 and "3 still parked" in still_down.output
    hdxrq.calls.clear()

    hdxrq.route("POST", CHANGE_EVENTS, fakes.json_reply({"state": "success"}))
    done = CliRunner().invoke(cli.resend)

    assert done.exit_code == 0, done.output
    assert "3 sent or dropped, 0 still parked" in done.output
    assert sent(hdxrq) == [("events", "first"), ("add-layer", "https://x.org/a.geojson"), ("events", "second")]
    assert CliRunner().invoke(cli.resend).output.strip() == "0 sent or dropped, 0 still parked"


def test_a_parked_notification_hdxrq_then_refuses_is_dropped_not_retried(hdxrq: FakeHdxrq) -> None:
    hdxrq.route("POST", CHANGE_EVENTS, fakes.json_reply({"error": "starting"}, 503))
    factories.Dataset(name="refused-later")
    hdxrq.route("POST", CHANGE_EVENTS, fakes.json_reply({"state": "failure", "message": "not a dataset"}))

    assert CliRunner().invoke(cli.resend).exit_code == 0

    assert status()["pending"] == 0
    assert "not a dataset" in status()["last_failures"]["create-change-events"]["message"]
