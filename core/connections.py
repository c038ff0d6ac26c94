"""Redis connections and RQ queues.

There are two Redis connections and they must not be confused: the *RQ Redis* holds queues, job records
and our own buffers; the *stream Redis* is the event bus shared with other services (never flushed).
Jobs are stored with RQ's JSON serializer: a Redis writer must not be able to make workers run code.

Either may be a single server (``redis://``) or a Sentinel-managed primary
(``redis+sentinel://[:password@]host:port[,host:port...]/<service name>[/<db>]``, the password being the
data nodes'). A Sentinel client asks the sentinels for the current primary on every new connection and
keeps retrying a failed command for ``HDXRQ_REDIS_FAILOVER_SEC``, so that the API, the workers and rq's
scheduler ride through a failover instead of failing on it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis import Redis, exceptions
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import Connection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection
from rq import Queue
from rq.serializers import JSONSerializer

from .redisurl import is_sentinel_url, parse_sentinel_url

if TYPE_CHECKING:
    from .settings import CoreSettings

SERIALIZER = JSONSerializer
SERIALIZER_PATH = "rq.serializers.JSONSerializer"
WORKER_CLASS_PATH = "core.worker.HdxWorker"
JOB_CLASS_PATH = "core.jobs.HdxJob"
CONNECTION_CLASS_PATH = "core.runtime.HdxRedis"
SOCKET_TIMEOUT_SEC = 10
CONNECT_TIMEOUT_SEC = 5
SENTINEL_TIMEOUT_SEC = 1.0
"""A sentinel that does not answer within this is skipped for the next one."""
DEFAULT_FAILOVER_SEC = 30.0
FAILOVER_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)
COMMAND_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
"""A command whose connection broke is sent again (twice at most): each attempt reconnects through
:class:`PrimaryConnection`, which waits for the (new) primary."""


def connect(
    url: str, *, redis_class: type[Redis] | None = None, failover_sec: float = DEFAULT_FAILOVER_SEC, **options: Any
) -> Redis:
    """A client for ``url``: a plain server, or the primary a set of sentinels names (``redis+sentinel://``)."""
    if not is_sentinel_url(url):
        client: Redis = (redis_class or Redis).from_url(url, **options)
        return client
    address = parse_sentinel_url(url)
    sentinel_options = {
        "socket_timeout": SENTINEL_TIMEOUT_SEC,
        "socket_connect_timeout": SENTINEL_TIMEOUT_SEC,
        "retry": Retry(NoBackoff(), 0),  # the next sentinel is the retry
    }
    sentinel = Sentinel(address.sentinels, sentinel_kwargs=sentinel_options)
    primary: Redis = sentinel.master_for(
        address.service,
        redis_class=redis_class or SentinelClient,
        db=address.db,
        username=address.username,
        password=address.password,
        retry=COMMAND_RETRY,
        connection_class=PrimaryConnection,
        failover_sec=failover_sec,
        **options,
    )
    return primary


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the sentinels name *now*, waiting out a failover when it connects.

    Connecting asks the sentinels for the primary and connects to it, again and again (backing off 50 ms,
    100 ms, ... 500 ms) for up to ``failover_sec``: while the old primary is down and until a replica is
    promoted, the connection waits instead of failing. Every (re)connection goes through here: redis-py
    8.1 would otherwise reconnect a dropped connection inside ``send_packed_command`` straight to the
    address it had, the dead primary. A command that loses its connection is retried (:data:`COMMAND_RETRY`)
    and so reconnects here.
    """

    def __init__(self, *, failover_sec: float = DEFAULT_FAILOVER_SEC, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        self.failover_sec = failover_sec

    def connect(self) -> None:
        deadline = time.monotonic() + self.failover_sec
        failures = 0
        while True:
            try:
                self._connect_retry()  # type: ignore[no-untyped-call]  # redis-py's: find the primary, connect
                return
            except (
                exceptions.ConnectionError,
                exceptions.TimeoutError,
            ):  # also: no sentinel names a primary
                failures += 1
                if time.monotonic() >= deadline:
                    raise
                time.sleep(FAILOVER_BACKOFF.compute(failures))

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        self.connect()

    def connect_to(self, address: tuple[str, int]) -> None:
        self.host, self.port = address
        Connection.connect_check_health(
            self, check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )


class SentinelClient(Redis):
    """The client class of Sentinel connections: closing it also closes its connections to the sentinels
    (redis-py leaves them to the garbage collector)."""

    def close(self) -> None:
        super().close()
        sentinels = getattr(self.connection_pool, "sentinel_manager", None)
        if sentinels is not None:
            sentinels.close()


def rq_redis(settings: CoreSettings) -> Redis:
    """A client for the RQ Redis (queues, job records, buffers)."""
    return _client(settings, settings.redis.url, health_check_interval=30)


def blocking_redis(settings: CoreSettings, seconds: float) -> Redis:
    """A client for the RQ Redis whose reads may block for ``seconds`` (waiting on a job's result)."""
    return _client(settings, settings.redis.url, socket_timeout=seconds + SOCKET_TIMEOUT_SEC)


def stream_redis(settings: CoreSettings) -> Redis:
    """A client for the event-bus Redis shared with other consumers."""
    return _client(settings, settings.event_bus.url, health_check_interval=30)


def _client(settings: CoreSettings, url: str, *, socket_timeout: float = SOCKET_TIMEOUT_SEC, **options: Any) -> Redis:
    return connect(
        url,
        failover_sec=settings.redis.failover_sec,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT_SEC,
        **options,
    )


def queue(name: str, connection: Redis) -> Queue:
    """The RQ queue ``name`` with the project's serializer."""
    return Queue(name, connection=connection, serializer=SERIALIZER)
