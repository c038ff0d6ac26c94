"""``run-checks`` says what failed with a code and a safe message: never the driver's text, which names
internal hosts, ports and connection strings (the details go to the service's log)."""

from __future__ import annotations

import re

import psycopg

from app.factory import create_app
from app.settings import Settings
from core.checks import CORE_CHECKS, failure_message

INTERNAL = "internal.invalid"
CODE_AND_MESSAGE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*: \S")


def test_failed_checks_carry_a_code_and_no_internal_detail(settings_env: dict[str, str]) -> None:
    env = {
        **settings_env,
        "HDXRQ_STREAM_REDIS_URL": f"redis://:stream-secret-8d2f@bus.{INTERNAL}:6380/7",
        "CKAN_API_BASE_URL": f"http://ckan.{INTERNAL}:5000/api/action",
    }
    result = create_app(Settings.from_env(env)).test_client().get("/api/run-checks").get_json()["result"]
    failed = {item["name"]: item["error_message"] for item in result if item["result"] == "Failed"}
    assert {"Event stream Redis", "CKAN API"} <= set(failed), failed
    for name, message in failed.items():
        assert CODE_AND_MESSAGE.match(message), (name, message)
        for leak in (INTERNAL, "6380", "5000", "secret", "redis://"):
            assert leak not in message, (name, message)


def test_a_database_error_is_reported_by_its_kind_only() -> None:
    postgis = next(check for check in CORE_CHECKS if check.type == "database")
    error = psycopg.OperationalError(
        'connection to server at "pg.internal.invalid" (10.0.0.5), port 5432 failed: FATAL: password '
        'authentication failed for user "gis"'
    )
    message = failure_message(postgis, error)
    assert message == "database-unavailable: PostGIS connection failed (OperationalError)"
