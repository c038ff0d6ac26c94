"""Fixtures of the analytics tests: fake Mixpanel and GA4, settings pointing at them, example payloads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.runtime import Runtime
from tests.fakes import FakeGa4, FakeMixpanel

EXAMPLES = Path(__file__).resolve().parent / "samples"  # copies of ../shared/examples/analytics-*.json
TEST_GA4_MEASUREMENT_ID = "G-TEST12345"
TEST_GA4_API_SECRET = "test-ga4-api-secret-9c2d4f"


@pytest.fixture
def fake_mixpanel() -> Iterator[FakeMixpanel]:
    with FakeMixpanel() as service:
        yield service


@pytest.fixture
def fake_ga4() -> Iterator[FakeGa4]:
    with FakeGa4() as service:
        yield service


@pytest.fixture
def settings_env(settings_env: dict[str, str], fake_mixpanel: FakeMixpanel, fake_ga4: FakeGa4) -> dict[str, str]:
    """The base test environment plus analytics destinations on the fakes and short, test-sized timings."""
    return {
        **settings_env,
        "MIXPANEL_API_URL": fake_mixpanel.url,
        "GA4_ENDPOINT": fake_ga4.endpoint,
        "GA4_MEASUREMENT_ID": TEST_GA4_MEASUREMENT_ID,
        "GA4_API_SECRET": TEST_GA4_API_SECRET,
        "HDXRQ_ANALYTICS_HTTP_TIMEOUT_SEC": "5",
        "HDXRQ_ANALYTICS_LEASE_SEC": "10",
        "HDXRQ_ANALYTICS_RETRY_BASE_SEC": "1",
        "HDXRQ_ANALYTICS_RETRY_MAX_SEC": "30",
        # One pass per drain, as in the tests written for it; test_lingering.py injects a clock for the window.
        "HDXRQ_ANALYTICS_DRAIN_IDLE_SEC": "0",
        # Every batch due at once, as in the tests written before the linger; test_linger.py sets it.
        "HDXRQ_ANALYTICS_LINGER_MS": "0",
    }


def example_payload(number: int) -> dict[str, Any]:
    """The payload of ``examples/analytics-0<number>-*.json``."""
    (path,) = sorted(EXAMPLES.glob(f"analytics-0{number}-*.json"))
    return copy.deepcopy(json.loads(path.read_text())["payload"])


@pytest.fixture
def payloads() -> list[dict[str, Any]]:
    """The three example payloads CKAN sends."""
    return [example_payload(n) for n in (1, 2, 3)]


@pytest.fixture
def post_event(client: FlaskClient) -> Callable[[Any], Any]:
    """POST a body to send-analytics like CKAN does, closing the response (which enqueues the drain)."""

    def post(body: Any) -> Any:
        response = client.post("/api/send-analytics", json=body)
        response.close()
        return response

    return post


@pytest.fixture
def redis(runtime: Runtime) -> Any:
    return runtime.redis
