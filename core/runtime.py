"""Per-process state: the settings and the connections built from them, created on first use.

The API builds one in :func:`app.factory.create_app`; a worker builds one when it starts
(:class:`core.worker.HdxWorker`). Job functions reach it with :func:`current`, so their arguments hold
ids and URLs only, never secrets or connections.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from redis import Redis

from .connections import SentinelClient, connect, rq_redis, stream_redis
from .redisurl import is_sentinel_url
from .settings import CoreSettings

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from .ckan import CkanClient

_lock = threading.Lock()
_current: Runtime | None = None


class Runtime:
    """Settings plus lazily created, fork-aware connections."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._pid = os.getpid()

    @cached_property
    def redis(self) -> Redis:
        """The RQ Redis (queues, job records, buffers)."""
        return rq_redis(self.settings)

    @cached_property
    def stream_redis(self) -> Redis:
        """The event-bus Redis (shared with other services)."""
        return stream_redis(self.settings)

    @cached_property
    def ckan(self) -> CkanClient:
        from .ckan import CkanClient

        return CkanClient.from_settings(self.settings)

    @cached_property
    def postgis(self) -> ConnectionPool:
        """A connection pool to PostGIS, opened on first use."""
        from .postgis import open_pool

        return open_pool(self.settings)

    def close(self) -> None:
        """Close what was opened (pools and clients)."""
        for name in ("postgis", "ckan"):
            resource = self.__dict__.pop(name, None)
            if resource is not None:
                resource.close()
        for name in ("redis", "stream_redis"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()

    def for_this_process(self) -> Runtime:
        """This runtime, or a fresh one with the same settings after a fork (pools don't survive forks)."""
        return self if self._pid == os.getpid() else Runtime(self.settings)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one :func:`current` returns in this process."""
    global _current
    with _lock:
        _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime, created from the environment on first use (with ``core``'s sections only:
    the composition installs one with every slice's)."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(CoreSettings.from_env())
        elif _current._pid != os.getpid():
            _current = _current.for_this_process()
        return _current


class HdxRedis(SentinelClient):
    """The connection class rq's commands use (``--connection-class``): ``from_url`` understands
    ``redis+sentinel://`` too, with the process's failover budget."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> HdxRedis:
        if not is_sentinel_url(url):
            return super().from_url(url, **kwargs)  # type: ignore[return-value]
        return connect(url, redis_class=cls, failover_sec=current().settings.redis.failover_sec, **kwargs)  # type: ignore[return-value]
