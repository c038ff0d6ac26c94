"""HTTP endpoints of the scheduler slice (CONTRACTS.md §2.8), all behind the admin token."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError

from core import finite
from core.auth import Caller
from core.errors import ServiceUnavailable

from . import service
from .errors import InvalidSchedule, ScheduleNotFound

if TYPE_CHECKING:
    from flask import Response

    from core.runtime import Runtime

log = logging.getLogger(__name__)

bp = Blueprint("scheduler", __name__)


def _runtime() -> Runtime:
    return current_app.extensions["hdx"]  # type: ignore[no-any-return]


@bp.post("/api/scheduler/add_job")
def add_job() -> Response:
    """Schedule a CKAN action call.

    Needs the admin token.

    * Body: `action`, `method` (`post` or `get`), `api_params`, and either a delay (`sch_minutes`,
      `sch_hours`, `sch_days`) for one call, or `cron` or `interval_minutes` for a recurring schedule.
    * Answers `{"success": true, "id", "description", "next_run"}`, or `{"success": false, "message":
      "Could not schedule job: ..."}`.
    """
    try:
        schedule = service.add_schedule(_runtime(), Caller.from_request(), finite.request_json(request))
    except finite.NonFiniteNumber as error:  # a client error worth its status: nothing was stored
        return _refused(error.message), error.http_status
    except InvalidSchedule as error:
        return _refused(error.message)
    except RedisError:
        log.exception("could not store a schedule")
        return _refused("Redis is unavailable")
    return jsonify(success=True, id=schedule.id, description=schedule.description, next_run=_next_run(schedule))


@bp.get("/api/scheduler/list_jobs")
def list_jobs() -> tuple[Response, int] | Response:
    """List the schedules.

    Needs the admin token. Answers `{"jobs": [...], "success": true}`, each schedule with its timing, next
    run and last result.
    """
    try:
        schedules = service.list_schedules(_runtime(), Caller.from_request())
    except RedisError:
        log.exception("could not read schedules")
        return _redis_down()
    return jsonify(jobs=[schedule.to_json() for schedule in schedules], success=True)


@bp.delete("/api/scheduler/jobs/<schedule_id>")
def cancel_job(schedule_id: str) -> tuple[Response, int] | Response:
    """Cancel a schedule.

    Needs the admin token. No further call is made; 404 when there is no such schedule.
    """
    try:
        cancelled = service.cancel_schedule(_runtime(), Caller.from_request(), schedule_id)
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


def _next_run(schedule: service.Schedule) -> str | None:
    return schedule.to_json()["next_run"]
