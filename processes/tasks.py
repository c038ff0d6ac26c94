"""Job functions that exist only for the processes API."""

from __future__ import annotations

from typing import Any

from core import runtime


def send_analytics_event(payload: dict[str, Any]) -> dict[str, Any]:
    """Buffer one analytics event for batched delivery, as ``POST /api/send-analytics`` does."""
    from analyticsapi import drain
    from analyticsapi.events import parse_event

    rt = runtime.current()
    event = parse_event(payload)
    if drain.append(rt.redis, event):  # True: this append set the drain flag, so it owes the drain
        drain.enqueue_drain(rt.redis, rt.settings)
    return {"buffered": True, "mixpanel": event.mixpanel is not None, "ga4": event.ga4 is not None}
