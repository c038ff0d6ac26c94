"""Job functions of the analytics slice (queue ``analytics_q``).

There is no job per event: :func:`drain` delivers everything buffered (see :mod:`analyticsapi.trigger`
for when it runs). It is safe to run twice or concurrently: each destination has one sender at a time,
and entries are acknowledged only after the destination took them.
"""

from __future__ import annotations

import logging
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
    report = None
    try:
        report = delivery.run()
    finally:
        delivery.close()
        # Even after a failure (Redis hiccup, bug) a tick comes back: buffered events never sit forever.
        come_back = report.come_back_in if report is not None else None
        trigger.schedule_tick(
            rt.redis, rt.settings, come_back if come_back is not None else rt.settings.analytics_tick_sec
        )
    if report.more:
        trigger.request_drain(rt.redis, rt.settings)
    if report.delivered or report.dead_lettered:
        log.info("analytics drain: delivered %s, dead-lettered %s", report.delivered, report.dead_lettered)
    return report.as_dict()


def on_worker_start(rt: Runtime) -> None:
    """Worker start-up hook: request a drain, so events left by a stopped or killed worker go out."""
    trigger.request_drain(rt.redis, rt.settings)
