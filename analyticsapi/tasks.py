"""Job functions of the analytics slice (queue ``analytics_q``).

There is no job per event: :func:`drain` delivers everything buffered, and keeps delivering what arrives
while it runs (see :mod:`analyticsapi.trigger` for when it runs). It is safe to run twice or
concurrently: each destination has one sender at a time, and entries are acknowledged only after the
destination took them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core import runtime
from core.runtime import Runtime

from . import service, trigger
from .buffer import SinkBuffer
from .delivery import Delivery, DrainReport

if TYPE_CHECKING:
    from redis import Redis

    from core.settings import Settings

log = logging.getLogger(__name__)

POLL_SEC = 0.1
"""How often a lingering drain looks for new events (a pass costs a few Redis round trips)."""


def drain(trigger_name: str = "request") -> dict[str, Any]:
    """Deliver the buffered analytics events in batches; schedule the next drain; return what was done."""
    rt = runtime.current()
    return run_drain(rt.redis, rt.settings, trigger_name)


def run_drain(
    redis: Redis,
    settings: Settings,
    trigger_name: str = "request",
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    delivery_clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """:func:`drain` with injectable clocks (``delivery_clock``: backoff times) and sleep (waiting for events)."""
    if trigger_name == "tick":
        trigger.tick_started(redis)
    delivery = Delivery.for_settings(redis, settings, clock=delivery_clock)
    trigger.drain_running(redis, delivery.lease_sec)
    report = None
    try:
        report = _deliver_while_busy(delivery, redis, clock, sleep)
    finally:
        delivery.close()
        # Even after a failure (Redis hiccup, bug) a tick comes back: buffered events never sit forever.
        come_back = report.come_back_in if report is not None else None
        trigger.schedule_tick(redis, settings, come_back if come_back is not None else settings.analytics_tick_sec)
    hand_over(redis, settings, report)
    if report.busy():
        log.info("analytics drain: delivered %s, dead-lettered %s", report.delivered, report.dead_lettered)
    return report.as_dict()


def _deliver_while_busy(
    delivery: Delivery, redis: Redis, clock: Callable[[], float], sleep: Callable[[float], None]
) -> DrainReport:
    """Pass after pass until no event came for the idle window, the budget ends, or nothing is ours to send.

    Each pass after the first costs a few Redis round trips; a new drain job would cost a fork.
    """
    settings = delivery.settings
    deadline = clock() + settings.analytics_drain_budget_sec
    total = DrainReport()
    idle_until = clock() + settings.analytics_drain_idle_sec
    while True:
        report = delivery.run(deadline=delivery.clock() + max(0.0, deadline - clock()))
        total.merge(report)
        if report.busy():
            idle_until = clock() + settings.analytics_drain_idle_sec
        if not report.active or report.more or clock() >= min(idle_until, deadline):
            return total
        trigger.drain_running(redis, delivery.lease_sec)
        sleep(POLL_SEC)


def hand_over(redis: Redis, settings: Settings, report: DrainReport) -> None:
    """After delivering: clear the flag, then request the next drain for anything still unread.

    A drain that held no lease leaves the flag to the drain that holds one (or to its expiry).
    """
    if not report.active:
        return
    trigger.drain_finished(redis)
    if report.more or any(SinkBuffer(redis, sink).has_unread() for sink in report.active):
        trigger.request_drain(redis, settings)


def buffer_event(payload: dict[str, Any]) -> dict[str, Any]:
    """Buffer one event submitted as a job (the OGC ``analytics-send`` process) and request its drain."""
    return service.buffer_event(runtime.current(), payload)


def on_worker_start(rt: Runtime) -> None:
    """Worker start-up hook: enqueue a drain, so events left by a stopped or killed worker go out."""
    trigger.request_drain(rt.redis, rt.settings, force=True)
