"""The door of the eventsapi slice: the only module other packages import from it.

Accept the change events of a CKAN write and request a file-structure check. Both need what CKAN's
notifications need (:data:`core.auth.Access.NOTIFIER`), validate their input and respect the queue's cap,
whether CKAN's endpoint or an OGC process (``change-detection``, ``file-structure-check``) called.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.auth import Access, Caller, operation
from core.jobs import check_capacity
from core.queues import QueueName
from core.runtime import Runtime

from .errors import EventsDisabled, FsCheckRequestError
from .intake import enqueue_change_request, event_time_now, event_time_of, parse_change_request
from .settings import EventsSettings
from .tasks import enqueue_check


@operation(Access.NOTIFIER)
def accept_change_events(rt: Runtime, caller: Caller, raw: bytes, requested_at: datetime | None = None) -> str:
    """Check a create-change-events body and queue the detection of its events; the job's id.

    The events carry the time of the request: now, or ``requested_at`` (an aware time) for a request
    made earlier, such as one the old service had queued when it was replaced.
    """
    if not EventsSettings.of(rt.settings).enabled:
        raise EventsDisabled()
    parse_change_request(raw)
    check_capacity(rt.settings, rt.redis, QueueName.EVENT)
    event_time = event_time_of(requested_at) if requested_at else event_time_now()
    return f"change-events-{enqueue_change_request(rt.redis, raw, event_time)}"


@operation(Access.NOTIFIER)
def request_file_structure_check(
    rt: Runtime, caller: Caller, dataset_id: str, resource_id: str, source_info_url: Any, fs_check_info: Any
) -> str:
    """Check the HXL proxy URL and the resource's check history, and queue the check; the job's id."""
    if not isinstance(source_info_url, str) or not source_info_url.startswith(("http://", "https://")):
        raise FsCheckRequestError("hxl_proxy_source_info_url must be an http(s) URL")
    history = "" if fs_check_info is None else fs_check_info
    if not isinstance(history, str):
        raise FsCheckRequestError("fs_check_info must be a JSON string of the resource's history list")
    check_capacity(rt.settings, rt.redis, QueueName.FS_CHECK)
    return str(enqueue_check(rt.redis, dataset_id, resource_id, source_info_url, history).id)
