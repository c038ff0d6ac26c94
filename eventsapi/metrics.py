"""Scrape-time metrics of the events slice: the stream, its consumer groups, pending fs-check callbacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import ResponseError
from rq.utils import as_text

from core.metrics import pending_jobs_source
from core.queues import QueueName

if TYPE_CHECKING:
    from core.runtime import Runtime

fs_check_callbacks_pending = pending_jobs_source(
    "hdxrq_fs_check_callbacks_pending",
    "File-structure-check callbacks to CKAN waiting to be sent or retried",
    QueueName.FS_CHECK,
    ("eventsapi.tasks.send_fs_check_result",),
)


def stream_metrics(runtime: Runtime) -> Iterable[Metric]:
    """Length of the event stream and, per consumer group, entries not yet delivered or not yet acked."""
    redis, name = runtime.stream_redis, runtime.settings.event_bus.stream_name
    length = GaugeMetricFamily("hdxrq_event_stream_length", "Entries in the event stream", labels=["stream"])
    lag = GaugeMetricFamily("hdxrq_event_stream_group_lag", "Entries a consumer group has not read", labels=["group"])
    pending = GaugeMetricFamily(
        "hdxrq_event_stream_group_pending", "Entries a consumer group read but did not acknowledge", labels=["group"]
    )
    length.add_metric([name], redis.xlen(name))
    try:
        groups = redis.xinfo_groups(name)
    except ResponseError:  # no stream yet
        groups = []
    for group in groups:
        group_name = as_text(group["name"])
        lag.add_metric([group_name], group.get("lag") or 0)
        pending.add_metric([group_name], group.get("pending") or 0)
    yield from (length, lag, pending)
