"""The job of one scheduled tick: schedule the next tick, then call the CKAN action.

Arguments are the schedule id and the tick (seconds since the epoch), nothing else: the action and its
parameters are read from the schedule, the CKAN token from the worker's own settings. A cancelled schedule
makes any of its jobs still queued or retrying a no-op.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import runtime
from core.errors import CkanUnavailable, ConfigurationError
from core.logging import mask_secrets
from core.progress import report_progress

from . import store
from .settings import SchedulerSettings

if TYPE_CHECKING:
    import httpx

    from core.runtime import Runtime

    from .store import Schedule

log = logging.getLogger(__name__)


def run_scheduled_call(schedule_id: str, tick: int) -> dict[str, Any] | None:
    """Run the call of ``schedule_id`` due at ``tick``; raise on 5xx/connection errors so rq retries."""
    rt = runtime.current()
    schedule = store.load(rt.redis, schedule_id)
    if schedule is None:
        log.info("schedule %s was cancelled: nothing to call", schedule_id)
        return None
    # The next tick is scheduled before the call, so a failing or slow call never breaks the chain.
    store.advance(rt.redis, schedule_id, tick, int(time.time()), rt.settings)
    if schedule.done_tick >= tick:
        log.info("schedule %s: the call of %s already ran", schedule_id, tick)
        return None
    refusal = _refusal(schedule, rt)
    if refusal:
        result = _result(status=None, started=datetime.now(UTC), duration=0.0, error=refusal)
        store.record_result(rt.redis, schedule_id, result, final=True, tick=tick)
        log.warning("schedule %s not called: %s", schedule_id, refusal)
        return result
    return _call(rt, schedule, tick)


def repair_schedules(rt: Runtime) -> None:
    """Worker start-up hook: re-create any tick job lost between two steps of a crashed worker."""
    repaired = store.repair(rt.redis, rt.settings)
    if repaired:
        log.warning("re-scheduled %d scheduled CKAN call(s) whose next job was missing", repaired)


def _call(rt: Runtime, schedule: Schedule, tick: int) -> dict[str, Any]:
    spec = schedule.spec
    started, clock = datetime.now(UTC), time.monotonic()
    report_progress("calling CKAN", 10.0)
    try:
        response = rt.ckan.call(
            spec.action,
            token=rt.settings.ckan.gis_api_key,
            method=spec.method,
            body=spec.api_params if spec.method == "POST" else None,
            params=spec.api_params if spec.method == "GET" else None,
        )
    except CkanUnavailable as error:
        result = _result(error.details.get("status"), started, time.monotonic() - clock, error.message)
        store.record_result(rt.redis, schedule.id, result, final=False, tick=tick)
        log.warning("scheduled %s: %s (will retry while retries are left)", spec.description, error.message)
        raise
    duration = time.monotonic() - clock
    error_text = None if response.is_success else _ckan_error(response, rt)
    result = _result(response.status_code, started, duration, error_text)
    store.record_result(rt.redis, schedule.id, result, final=True, tick=tick)
    log.log(
        logging.INFO if response.is_success else logging.WARNING,
        "scheduled %s: HTTP %s in %.0f ms",
        spec.description,
        response.status_code,
        duration * 1000,
    )
    return result


def _refusal(schedule: Schedule, rt: Runtime) -> str | None:
    """Why this worker must not make the call (its own settings decide, not the stored schedule)."""
    allowed = SchedulerSettings.of(rt.settings).allowed_actions
    if allowed and schedule.spec.action not in allowed:
        return f"action {schedule.spec.action} is not in HDXRQ_SCHEDULER_ALLOWED_ACTIONS"
    if rt.settings.ckan.gis_api_key is None:
        return ConfigurationError("HDX_GIS_API_KEY is not set").message
    if not rt.settings.ckan.api_base_url:
        return ConfigurationError("CKAN_API_BASE_URL is not set").message
    return None


def _ckan_error(response: httpx.Response, rt: Runtime) -> str:
    """CKAN's own error message for a refused call, short and with no secret in it."""
    text = f"HTTP {response.status_code}"
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        kind, message = error.get("__type"), error.get("message")
        text += ": " + ": ".join(str(part) for part in (kind, message) if part)
    elif error:
        text += f": {error}"
    return mask_secrets(text, rt.settings.secret_values())[: store.ERROR_TEXT_LIMIT]


def _result(status: int | None, started: datetime, duration: float, error: str | None) -> dict[str, Any]:
    return {
        "at": started.isoformat(timespec="seconds"),
        "status": status,
        "duration_ms": round(duration * 1000),
        "error": error,
    }
