"""The door of the analyticsapi slice: the only module other packages import from it.

An analytics event is accepted (validated and buffered at once: CKAN's ``POST /api/send-analytics``, in
its express lane or through Flask) or submitted as a job (the OGC ``analytics-send`` process), which
buffers it in a worker. Both need what a CKAN notification needs (:data:`core.auth.Access.NOTIFIER`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import RedisError

from core.auth import Access, Caller, operation
from core.connections import queue
from core.jobs import check_capacity
from core.queues import QueueName
from core.runtime import Runtime

from . import drain
from .errors import AnalyticsBufferUnavailable, InvalidAnalyticsEvent
from .events import AnalyticsEvent, parse_event
from .settings import AnalyticsSettings

log = logging.getLogger(__name__)

BUFFER_JOB_FUNCTION = "analyticsapi.tasks.buffer_event"


@dataclass(frozen=True)
class Answer:
    """What send-analytics answers: HTTP status, JSON body, and whether to request a drain afterwards."""

    status: int
    body: dict[str, Any]
    request_drain: bool = False


@operation(Access.NOTIFIER)
def accept_event(rt: Runtime, caller: Caller, payload: Any) -> Answer:
    """Validate a parsed body (None when it was not JSON) and buffer its event: the endpoint's whole job.

    When the answer says so, the caller calls :func:`request_drain` once the response is sent.
    """
    try:
        event = deliverable(parse_event(payload), rt)
        must_request_drain = drain.append(rt.redis, event) if event.mixpanel or event.ga4 else False
    except InvalidAnalyticsEvent as error:
        return failure(error.message, error.http_status)
    except RedisError as error:
        log.error("analytics event not buffered: %s", type(error).__name__)
        unavailable = AnalyticsBufferUnavailable()
        return failure(unavailable.message, unavailable.http_status)
    return Answer(200, {"success": True}, must_request_drain)


@operation(Access.NOTIFIER)
def submit_event(rt: Runtime, caller: Caller, payload: dict[str, Any]) -> str:
    """Check an event and queue a job that buffers it (what the endpoint does, as a job); the job's id."""
    parse_event(payload)  # InvalidAnalyticsEvent before anything is queued
    check_capacity(rt.settings, rt.redis, QueueName.ANALYTICS)
    name = str(payload.get("event_name", ""))[:100]
    job = queue(QueueName.ANALYTICS, rt.redis).enqueue(
        BUFFER_JOB_FUNCTION, payload, description=f"analytics event {name}"
    )
    return str(job.id)


def buffer_event(rt: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Buffer an event a job carries (checked when it was submitted) and request its drain."""
    event = deliverable(parse_event(payload), rt)
    if (event.mixpanel or event.ga4) and drain.append(rt.redis, event):
        # this append set the drain flag, so it owes the drain
        drain.enqueue_drain(rt.redis, AnalyticsSettings.of(rt.settings))
    return {"buffered": True, "mixpanel": event.mixpanel is not None, "ga4": event.ga4 is not None}


def request_drain(rt: Runtime) -> None:
    """Queue the drain an accepted event asked for; run after the response went out, and never raises."""
    try:
        drain.enqueue_drain(rt.redis, AnalyticsSettings.of(rt.settings))
    except Exception:  # the event is buffered: the next request, a tick or a worker start drains it
        log.exception("could not enqueue the analytics drain")


def deliverable(event: AnalyticsEvent, rt: Runtime) -> AnalyticsEvent:
    """Without GA4 credentials there is nowhere to send GA hits: they are not buffered."""
    config = AnalyticsSettings.of(rt.settings)
    if event.ga4 is not None and not (config.ga4_measurement_id and config.ga4_api_secret):
        log.debug("GA4 is not configured (GA4_MEASUREMENT_ID, GA4_API_SECRET): GA hit not buffered")
        return replace(event, ga4=None)
    return event


def failure(message: str, status: int) -> Answer:
    """The endpoint's failure answer."""
    return Answer(status, {"success": False, "error": message})
