"""Job functions of the analytics slice (queue ``analytics_q``): adapters of :mod:`analyticsapi.drain`.

There is no job per event: :func:`drain` delivers everything buffered, and keeps delivering what arrives
while it runs. It is safe to run twice or concurrently: each destination has one sender at a time, and
entries are acknowledged only after the destination took them. Queued and scheduled jobs name these
dotted paths, so they stay put while the drain's code moves.
"""

from __future__ import annotations

from typing import Any

from core import runtime
from core.runtime import Runtime

from . import drain as _drain
from . import service
from .settings import AnalyticsSettings


def drain(trigger_name: str = "request") -> dict[str, Any]:
    """Deliver the buffered analytics events in batches; schedule the next drain; return what was done."""
    rt = runtime.current()
    return _drain.run_drain(rt.redis, AnalyticsSettings.of(rt.settings), trigger_name)


def buffer_event(payload: dict[str, Any]) -> dict[str, Any]:
    """Buffer one event submitted as a job (the OGC ``analytics-send`` process) and request its drain."""
    return service.buffer_event(runtime.current(), payload)


def on_worker_start(rt: Runtime) -> None:
    """Worker start-up hook: enqueue a drain, so events left by a stopped or killed worker go out."""
    _drain.request_drain(rt.redis, AnalyticsSettings.of(rt.settings), force=True)
