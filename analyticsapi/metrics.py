"""Scrape-time metrics of the analytics slice: the delivery buffer and the dead-letter list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from . import buffer

if TYPE_CHECKING:
    from core.runtime import Runtime


def buffer_metrics(runtime: Runtime) -> Iterable[Metric]:
    """Events waiting per destination, and events dead-lettered."""
    backlog = GaugeMetricFamily(
        "hdxrq_analytics_buffer_events", "Analytics events waiting for delivery", labels=["sink"]
    )
    for sink in buffer.SINKS:
        backlog.add_metric([sink], buffer.SinkBuffer(runtime.redis, sink).backlog())
    dead = GaugeMetricFamily("hdxrq_analytics_dead_letter_events", "Analytics events in the dead-letter list")
    dead.add_metric([], runtime.redis.llen(buffer.DEAD_LETTER_KEY))
    yield from (backlog, dead)
