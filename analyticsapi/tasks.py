"""Job functions of the analytics slice (queue ``analytics_q``).

There is no job per event: :func:`drain` delivers everything buffered (see :mod:`analyticsapi.trigger`
for when it runs). It is safe to run twice or concurrently: each destination has one sender at a time,
and entries are acknowledged only after the destination took them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core import runtime
from core.runtime import Runtime

from . import trigger
from .delivery import Delivery

log = logging.getLogger(__name__)


def drain(trigger_name: str = "request") -> dict[str, Any]:
    """Deliver the buffered analytics events in batches; schedule the next drain; return what was done."""
    rt = runtime.current()
    if trigger_name == "tick":
        trigger.tick_started(rt.redis)
    trigger.drain_started(rt.redis)
    delivery = Delivery.for_settings(rt.redis, rt.settings)
    try:
        report = delivery.run()
    finally:
        delivery.close()
    if report.more:
        trigger.request_drain(rt.redis, rt.settings)
    delay = report.come_back_in if report.come_back_in is not None else rt.settings.analytics_tick_sec
    trigger.schedule_tick(rt.redis, rt.settings, delay, now=time.time())
    if report.delivered or report.dead_lettered:
        log.info("analytics drain: delivered %s, dead-lettered %s", report.delivered, report.dead_lettered)
    return report.as_dict()


def on_worker_start(rt: Runtime) -> None:
    """Worker start-up hook: request a drain, so events left by a stopped or killed worker go out."""
    trigger.request_drain(rt.redis, rt.settings)
