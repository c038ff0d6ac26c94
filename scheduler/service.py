"""The door of the scheduler slice: the only module other packages import from it.

Schedule a CKAN call (once, on an interval or a cron expression), call one now (the OGC ``ckan-call``
process), list and cancel schedules. Every one of them calls CKAN with the service's own token, so every
one needs the admin token (:data:`core.auth.Access.ADMIN`) on every entrance; the local command line is
trusted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from core.auth import Access, Caller, operation
from core.jobs import check_capacity
from core.queues import QueueName
from core.runtime import Runtime

from . import store
from .schedules import parse_add_job
from .store import Schedule

SCHEDULE_ID = re.compile(r"[0-9a-f]{32}")

__all__ = ["Schedule", "add_schedule", "call_now", "cancel_schedule", "list_schedules"]


@operation(Access.ADMIN)
def add_schedule(rt: Runtime, caller: Caller, body: Any) -> Schedule:
    """Check an ``add_job`` body (raises :class:`~scheduler.errors.InvalidSchedule`) and store its schedule."""
    now = datetime.now(UTC)
    return store.create(rt.redis, parse_add_job(body, rt.settings, now), rt.settings, now)


@operation(Access.ADMIN)
def call_now(rt: Runtime, caller: Caller, action: str, method: str, api_params: dict[str, Any]) -> str:
    """Call a CKAN action once, as soon as a worker can; the id of the job that makes the call."""
    check_capacity(rt.settings, rt.redis, QueueName.SCHEDULER)
    body = {"action": action, "method": method, "api_params": api_params, "sch_minutes": 0}
    schedule = add_schedule(rt, caller, body)
    return store.tick_job_id(schedule.id, schedule.spec.first_tick)


@operation(Access.ADMIN)
def list_schedules(rt: Runtime, caller: Caller) -> list[Schedule]:
    """Every schedule, oldest first."""
    return store.all_schedules(rt.redis)


@operation(Access.ADMIN)
def cancel_schedule(rt: Runtime, caller: Caller, schedule_id: str) -> bool:
    """Cancel a schedule (no further call is made); whether there was one."""
    return bool(SCHEDULE_ID.fullmatch(schedule_id)) and store.cancel(rt.redis, schedule_id)
