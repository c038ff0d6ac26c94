"""Queue capacity (bounded queues) and the job records every slice shares.

A queue has a limit (``HDXRQ_MAX_QUEUED_JOBS``: one number for every queue and/or ``queue=number``
overrides, 0 for none). Endpoints call :func:`check_capacity` before enqueueing; beyond the limit they
refuse with :class:`QueueFull` (503 with ``Retry-After`` on the job API; CKAN's endpoints answer their
own failure shape), so a flood cannot grow Redis without bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rq.job import Job

from .connections import queue
from .errors import HdxError, ServiceUnavailable

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


class ForbiddenJobFunction(HdxError):
    """A job names a function outside the project's job modules: it is refused, never imported."""

    error_type = "forbidden-job-function"
    http_status = 400
    user_message = "This job's function is not one the service runs"


class HdxJob(Job):
    """RQ's job, limited to functions (and callbacks) in the modules of ``HDXRQ_JOB_MODULES``.

    Jobs are stored as JSON, so nobody with write access to Redis can smuggle a pickle; this closes the
    other door: a JSON job naming ``os.system`` or any other importable callable is refused before import.
    """

    @property
    def func(self) -> Any:
        _check_allowed(self.func_name)
        return super().func

    @property
    def success_callback(self) -> Any:
        _check_allowed(self._success_callback_name)
        return super().success_callback

    @property
    def failure_callback(self) -> Any:
        _check_allowed(self._failure_callback_name)
        return super().failure_callback

    @property
    def stopped_callback(self) -> Any:
        _check_allowed(self._stopped_callback_name)
        return super().stopped_callback


def _check_allowed(dotted_name: str | None) -> None:
    if dotted_name is None:
        return
    from . import runtime

    modules = runtime.current().settings.job_modules
    if not any(dotted_name.startswith(f"{module}.") for module in modules):
        raise ForbiddenJobFunction(f"refused to run {dotted_name[:200]!r}: not in HDXRQ_JOB_MODULES")
