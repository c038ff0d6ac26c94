"""How delivery runs on ``analytics_q`` without one job per event, and without one job per burst either.

* The edge sets ``drain-requested`` (SET NX, in the same MULTI as the XADD). Only the request that
  set it enqueues a drain job, after its response is sent.
* The flag stays set while that drain is queued *and while it runs*: a running drain renews it (for as
  long as a lease) after every pass and keeps claiming new events until none came for
  ``HDXRQ_ANALYTICS_DRAIN_IDLE_SEC`` (or its budget ends). Under steady traffic one drain job, in one work
  horse, delivers everything; the edge enqueues nothing.
* A drain that delivered clears the flag when it ends and *then* looks for events no sender has read:
  an event buffered before the clear is seen by that look, one buffered after it sets the flag and
  enqueues the next drain. No event is stranded, and at most one drain is waiting at any time.
* Every drain ends by scheduling a *tick* (a delayed drain, ``enqueue_in``): soon when a destination is
  backing off or a lease held by a dead worker must expire, otherwise after ``HDXRQ_ANALYTICS_TICK_SEC``.
  So events never sit forever, even when an enqueue was lost or a drain was killed while holding the
  flag (it expires with the lease). Workers also enqueue a drain when they start.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from rq import Retry

from core.connections import queue

from .buffer import DRAIN_REQUEST_TTL_SEC, DRAIN_REQUESTED_KEY, PREFIX

if TYPE_CHECKING:
    from redis import Redis

    from core.settings import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "analytics_q"
DRAIN_FUNCTION = "analyticsapi.tasks.drain"
TICK_KEY = f"{PREFIX}:tick"
"""Holds the due time (epoch seconds) of the scheduled tick."""
JOB_RESULT_TTL_SEC = 300
DRAIN_RETRY = Retry(max=3, interval=[5, 30, 120])
"""A drain that dies without ending normally (its worker killed, Redis gone under it) schedules no tick:
rq runs it again, so buffered events do not wait for the next request or worker start."""
JOB_FAILURE_TTL_SEC = 7 * 24 * 3600


def job_timeout(settings: Settings) -> int:
    """RQ timeout of a drain: its time budget plus one last batch (HTTP timeout) and the lease."""
    return int(settings.analytics_drain_budget_sec + 2 * settings.analytics_http_timeout_sec + 60)


def enqueue_drain(redis: Redis, settings: Settings, *, trigger: str = "request", delay: float = 0.0) -> str:
    """Enqueue one drain job (after ``delay`` seconds); return its id."""
    q = queue(QUEUE_NAME, redis)
    options = {
        "job_timeout": job_timeout(settings),
        "result_ttl": JOB_RESULT_TTL_SEC,
        "failure_ttl": JOB_FAILURE_TTL_SEC,
        "description": f"analytics delivery ({trigger})",
        "retry": DRAIN_RETRY,
    }
    if delay > 0:
        job = q.enqueue_in(timedelta(seconds=delay), DRAIN_FUNCTION, trigger, **options)
    else:
        job = q.enqueue(DRAIN_FUNCTION, trigger, **options)
    return str(job.id)


def request_drain(redis: Redis, settings: Settings, *, force: bool = False) -> bool:
    """Enqueue a drain unless one is already waiting or running (``force``: in any case); return whether
    this call enqueued it."""
    if not redis.set(DRAIN_REQUESTED_KEY, "1", nx=not force, ex=DRAIN_REQUEST_TTL_SEC):
        return False
    enqueue_drain(redis, settings)
    return True


def drain_running(redis: Redis, hold_sec: float) -> None:
    """Called by a drain at its start and after every pass: events arriving meanwhile enqueue nothing.

    The flag expires ``hold_sec`` after the last call, so a drain killed while holding it blocks new
    requests no longer than its lease blocks delivery.
    """
    redis.set(DRAIN_REQUESTED_KEY, "1", ex=max(1, int(hold_sec)))


def drain_finished(redis: Redis) -> None:
    """Called by a drain that delivered, before its last look for unread events: new ones request a drain."""
    redis.delete(DRAIN_REQUESTED_KEY)


def schedule_tick(redis: Redis, settings: Settings, delay: float, *, now: float | None = None) -> bool:
    """Make sure a drain runs within ``delay`` seconds; return whether a new tick was scheduled.

    A tick already due sooner is kept; an earlier one replaces the flag (an extra drain is harmless).
    """
    now = time.time() if now is None else now
    due = now + max(0.0, delay)
    current = redis.get(TICK_KEY)
    if current is not None and float(current) <= due + 1.0:
        return False
    # The flag outlives its tick a little: if the tick job is lost, the next drain schedules another.
    redis.set(TICK_KEY, repr(due), ex=int(delay) + job_timeout(settings) + 60)
    enqueue_drain(redis, settings, trigger="tick", delay=delay)
    return True


def tick_started(redis: Redis, now: float | None = None) -> None:
    """Called by a tick drain: forget a due time that has passed, so the next tick can be scheduled."""
    now = time.time() if now is None else now
    current = redis.get(TICK_KEY)
    if current is not None and float(current) <= now + 1.0:
        redis.delete(TICK_KEY)
