"""Fixtures of the plugin tests, run by CKAN's pytest plugin in CKAN's virtualenv.

``./dev.sh test`` runs them (``tests/ckanext/test_plugin_suite.py``) with an ini file naming a database
and a Redis database of their own and the Solr stand-in. hdxrq is replaced by a recording HTTP server from
the repository's ``tests/fakes.py`` that answers as hdxrq does, or fails and stalls on demand.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_fakes() -> Any:
    """``tests/fakes.py`` of the hdxrq repository this extension lives in, loaded by path: CKAN puts its own
    package directory first on ``sys.path``, so ``import tests`` would find CKAN's tests."""
    path = Path(__file__).resolve().parents[4] / "tests" / "fakes.py"
    spec = importlib.util.spec_from_file_location("hdxrq_tests_fakes", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()
Call, FakeService, Responder, json_reply = fakes.Call, fakes.FakeService, fakes.Responder, fakes.json_reply

ADD_LAYER = "/api/add-layer/"
DELETE_LAYER = "/api/delete-one-layer/"
CHANGE_EVENTS = "/api/create-change-events"
PROCESSING = {
    "state": "processing",
    "message": "The processing of the geo-preview has started",
    "layer_id": "None",
    "error_type": "None",
    "error_class": "None",
}
STARTED = {"state": "started", "message": "None", "error_type": "None", "error_class": "None"}


class FakeHdxrq(FakeService):
    """hdxrq's notification endpoints: every call recorded, answers scripted per endpoint."""

    def __init__(self) -> None:
        super().__init__("fake-hdxrq")
        self.add_layer_reply: Responder = json_reply(PROCESSING)
        self.delete_layer_reply: Responder = json_reply(STARTED)
        self.route("POST", CHANGE_EVENTS, json_reply({"state": "success"}))

    def _record(self, call: Call) -> Responder | None:
        # layer paths carry the ids, so they are answered by prefix rather than by exact route
        responder = super()._record(call)
        if responder is None and call.path.startswith(ADD_LAYER):
            return self.add_layer_reply
        if responder is None and call.method == "POST" and call.path.startswith(DELETE_LAYER):
            return self.delete_layer_reply
        return responder

    def add_layer_calls(self) -> list[Call]:
        return [call for call in self.calls if call.path.startswith(ADD_LAYER)]

    def dropped_layers(self) -> list[str]:
        """Resource ids of every delete-one-layer call so far."""
        return [call.path.removeprefix(DELETE_LAYER) for call in self.calls if call.path.startswith(DELETE_LAYER)]

    def change_events(self) -> list[dict[str, Any]]:
        return [call.json() for call in self.calls_to(CHANGE_EVENTS, "POST")]


@pytest.fixture
def site(clean_db: None, clean_redis: None, with_plugins: None) -> None:
    """An empty database and Redis, and the plugins of the ini file (``hdxrq hdxrq_view``) loaded."""


@pytest.fixture
def hdxrq(site: None, ckan_config: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHdxrq]:
    """The stand-in hdxrq, named by ``ckanext.hdxrq.url``."""
    with FakeHdxrq() as fake:
        monkeypatch.setitem(ckan_config, "ckanext.hdxrq.url", fake.url)
        yield fake  # type: ignore[misc]
