"""HTTP endpoints of the scheduler slice (CONTRACTS.md §2.8), all behind the admin token."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError

from core import finite
from core.auth import admin_required
from core.errors import ServiceUnavailable

from . import store
from .errors import InvalidSchedule, ScheduleNotFound
from .schedules import parse_add_job

if TYPE_CHECKING:
    from flask import Response

    from core.runtime import Runtime

log = logging.getLogger(__name__)

bp = Blueprint("scheduler", __name__)

SCHEDULE_ID = re.compile(r"[0-9a-f]{32}")


def _runtime() -> Runtime:
    return current_app.extensions["hdx"]  # type: ignore[no-any-return]


@bp.post("/api/scheduler/add_job")
@admin_required
def add_job() -> Response:
    """Schedule a CKAN call: once after ``sch_*``, or recurring with ``cron`` / ``interval_minutes``."""
    rt = _runtime()
    try:
        spec = parse_add_job(finite.request_json(request), rt.settings, datetime.now(UTC))
        schedule = store.create(rt.redis, spec, rt.settings, datetime.now(UTC))
    except finite.NonFiniteNumber as error:  # a client error worth its status: nothing was stored
        return _refused(error.message), error.http_status
    except InvalidSchedule as error:
        return _refused(error.message)
    except RedisError:
        log.exception("could not store a schedule")
        return _refused("Redis is unavailable")
    return jsonify(success=True, id=schedule.id, description=schedule.description, next_run=_next_run(schedule))


@bp.get("/api/scheduler/list_jobs")
@admin_required
def list_jobs() -> tuple[Response, int] | Response:
    """Every schedule with its timing, next run and last result."""
    try:
        schedules = store.all_schedules(_runtime().redis)
    except RedisError:
        log.exception("could not read schedules")
        return _redis_down()
    return jsonify(jobs=[schedule.to_json() for schedule in schedules], success=True)


@bp.delete("/api/scheduler/jobs/<schedule_id>")
@admin_required
def cancel_job(schedule_id: str) -> tuple[Response, int] | Response:
    """Cancel a schedule: no further call is made."""
    try:
        cancelled = bool(SCHEDULE_ID.fullmatch(schedule_id)) and store.cancel(_runtime().redis, schedule_id)
    except RedisError:
        log.exception("could not cancel a schedule")
        return _redis_down()
    if not cancelled:
        error = ScheduleNotFound(f"No scheduled job {schedule_id[:64]}")
        return jsonify(success=False, message=error.message, error_type=error.error_type), error.http_status
    return jsonify(success=True, id=schedule_id)


def _refused(reason: str) -> Response:
    # CONTRACTS.md §2: business failures answer HTTP 200 with the failure body.
    body: dict[str, Any] = {"success": False, "message": f"Could not schedule job: {reason}"}
    return jsonify(body)


def _redis_down() -> tuple[Response, int]:
    error = ServiceUnavailable("Redis is unavailable")
    return jsonify(success=False, message=error.message, error_type=error.error_type), error.http_status


def _next_run(schedule: store.Schedule) -> str | None:
    return schedule.to_json()["next_run"]
