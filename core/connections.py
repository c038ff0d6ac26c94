"""Redis connections and RQ queues.

There are two Redis connections and they must not be confused: the *RQ Redis* holds queues, job records
and our own buffers; the *stream Redis* is the event bus shared with other services (never flushed).
Jobs are stored with RQ's JSON serializer: a Redis writer must not be able to make workers run code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

if TYPE_CHECKING:
    from .settings import Settings

SERIALIZER = JSONSerializer
SERIALIZER_PATH = "rq.serializers.JSONSerializer"
WORKER_CLASS_PATH = "core.worker.HdxWorker"
JOB_CLASS_PATH = "core.jobs.HdxJob"
SOCKET_TIMEOUT_SEC = 10


def rq_redis(settings: Settings) -> Redis:
    """A client for the RQ Redis (queues, job records, buffers)."""
    return Redis.from_url(
        settings.redis_url, socket_timeout=SOCKET_TIMEOUT_SEC, socket_connect_timeout=5, health_check_interval=30
    )


def blocking_redis(settings: Settings, seconds: float) -> Redis:
    """A client for the RQ Redis whose reads may block for ``seconds`` (waiting on a job's result)."""
    return Redis.from_url(settings.redis_url, socket_timeout=seconds + SOCKET_TIMEOUT_SEC, socket_connect_timeout=5)


def stream_redis(settings: Settings) -> Redis:
    """A client for the event-bus Redis shared with other consumers."""
    return Redis.from_url(
        settings.stream_url, socket_timeout=SOCKET_TIMEOUT_SEC, socket_connect_timeout=5, health_check_interval=30
    )


def queue(name: str, connection: Redis) -> Queue:
    """The RQ queue ``name`` with the project's serializer."""
    return Queue(name, connection=connection, serializer=SERIALIZER)
