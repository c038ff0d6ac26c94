"""Queue capacity (bounded queues) and the job class every worker uses.

A queue has a limit (``HDXRQ_MAX_QUEUED_JOBS``: one number for every queue and/or ``queue=number``
overrides, 0 for none). Endpoints call :func:`check_capacity` before enqueueing; beyond the limit they
refuse with :class:`QueueFull` (503 with ``Retry-After`` on the job API; CKAN's endpoints answer their
own failure shape), so a flood cannot grow Redis without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from rq.job import Job

from . import registry
from .connections import queue
from .errors import ServiceUnavailable
from .registry import ForbiddenJobFunction

if TYPE_CHECKING:
    from redis import Redis

    from .settings import CoreSettings

RETRY_AFTER_SEC = 30


class QueueFull(ServiceUnavailable):
    """The queue holds as many waiting jobs as it may."""

    error_type = "queue-full"
    user_message = "Too many jobs are waiting; try again later"
    retry_after: ClassVar[int] = RETRY_AFTER_SEC


def queue_limit(settings: CoreSettings, queue_name: str) -> int:
    """The most jobs ``queue_name`` may hold waiting (0: no limit)."""
    limits = settings.jobs.max_queued
    return limits.get(queue_name, limits.get("*", 0))


def check_capacity(settings: CoreSettings, redis: Redis, queue_name: str) -> None:
    """Raise :class:`QueueFull` when ``queue_name`` is at its limit."""
    limit = queue_limit(settings, queue_name)
    if limit and queue(queue_name, redis).count >= limit:
        raise QueueFull(f"{queue_name} already holds {limit} waiting jobs; try again later")


class HdxJob(Job):
    """RQ's job, limited to the functions of the job registry (:mod:`core.registry`), by exact name.

    Jobs are stored as JSON, so nobody with write access to Redis can smuggle a pickle; this closes the
    other door: a job naming ``os.system``, ``importapi.ogr.os.system`` or any other importable callable,
    or a callback that is not a registered callback, fails with :class:`ForbiddenJobFunction` before
    anything runs or is imported. No job may call a method of a stored instance (the service queues none).
    """

    @property
    def func(self) -> Any:
        if self.instance is not None:
            raise ForbiddenJobFunction("Refused to run a job that calls a method of a stored object")
        return registry.current().job_function(self.func_name)

    def perform(self) -> Any:
        self.check_runnable()
        return super().perform()

    def check_runnable(self) -> None:
        """Raise :class:`ForbiddenJobFunction` unless the job's function and callbacks are all registered."""
        _ = self.func
        for name in (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name):
            _callback(name)

    @property
    def success_callback(self) -> Any:
        return _callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return _callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return _callback(self._stopped_callback_name)


def _callback(name: str | None) -> Any:
    return registry.current().callback_function(name) if name else None


def on_last_attempt(handler: Callable[[Job, BaseException | None], None]) -> Callable[..., None]:
    """An rq failure callback that calls ``handler(job, exc_value)`` once the job's retries are spent.

    rq calls a failure callback when an attempt raised, when the worker running it died (its heartbeat
    expired), and (:class:`core.worker.HdxWorker`) when its work horse was killed; ``exc_value`` is None
    when nothing was raised. An attempt with retries left is run again, and the handler is not called.
    The callback keeps the handler's name, which is what rq stores and the registry looks up.
    """

    @wraps(handler)
    def failure_callback(
        job: Job,
        connection: object,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if job.retries_left:
            return
        handler(job, exc_value)

    return failure_callback
