"""Queue capacity (bounded queues) and the job records every slice shares.

A queue has a limit (``HDXRQ_MAX_QUEUED_JOBS``: one number for every queue and/or ``queue=number``
overrides, 0 for none). Endpoints call :func:`check_capacity` before enqueueing; beyond the limit they
refuse with :class:`QueueFull` (503 with ``Retry-After`` on the job API; CKAN's endpoints answer their
own failure shape), so a flood cannot grow Redis without bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .connections import queue
from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from redis import Redis

    from .settings import Settings

RETRY_AFTER_SEC = 30


class QueueFull(ServiceUnavailable):
    """The queue holds as many waiting jobs as it may."""

    error_type = "queue-full"
    user_message = "Too many jobs are waiting; try again later"
    retry_after: ClassVar[int] = RETRY_AFTER_SEC


def queue_limit(settings: Settings, queue_name: str) -> int:
    """The most jobs ``queue_name`` may hold waiting (0: no limit)."""
    limits = settings.max_queued_jobs
    return limits.get(queue_name, limits.get("*", 0))


def check_capacity(settings: Settings, redis: Redis, queue_name: str) -> None:
    """Raise :class:`QueueFull` when ``queue_name`` is at its limit."""
    limit = queue_limit(settings, queue_name)
    if limit and queue(queue_name, redis).count >= limit:
        raise QueueFull(f"{queue_name} already holds {limit} waiting jobs; try again later")
