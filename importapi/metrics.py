"""Scrape-time metrics of the geopreview slice (see core.metrics)."""

from __future__ import annotations

from core.metrics import pending_jobs_source
from core.queues import QueueName

callbacks_pending = pending_jobs_source(
    "hdxrq_geopreview_callbacks_pending",
    "Geopreview callbacks to CKAN waiting to be sent or retried",
    QueueName.GEO,
    ("importapi.tasks.send_callback",),
)
