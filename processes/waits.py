"""How many API requests may hold their API process while they wait for a job (``Prefer: wait``).

The API is a few single-threaded uWSGI processes (``HDXRQ_API_WORKERS``, more while every one is busy, up to
``HDXRQ_API_MAX_WORKERS``). A request that waits for its job holds its process for up to two minutes,
and CKAN's notifications need a free process within milliseconds: its users' saves wait on them. So at
most ``HDXRQ_API_WORKERS`` × ``HDXRQ_API_THREADS`` − 1 requests wait at once, and at least one of the
processes that always run stays free for notifications, without waiting the seconds uWSGI takes to start
another (docs/access.md). Past the bound the job API answers at once, as without ``Prefer: wait`` (201 and
the job's status; the client polls), which OGC API - Processes allows. With one process nobody waits.

The processes share nothing but Redis, so the count lives there: a sorted set of the waiting requests,
each scored with the moment its wait ends (plus a margin), so a process killed while waiting frees its
place when that moment passes. One count serves every API that shares the Redis: with several API hosts
the bound is stricter than each needs, never looser.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

    from core.settings import CoreSettings

KEY = "hdxrq:api:sync-waits"
MARGIN_SEC = 30
"""A place is kept this long past the end of its wait (the job's results are read and sent meanwhile)."""

_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
local ends = now_ms + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], ends, ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


def bound(settings: CoreSettings) -> int:
    """How many requests may wait at once: every always-running request slot but one."""
    return max(0, settings.api.workers * settings.api.threads - 1)


@contextmanager
def place(redis: Redis, settings: CoreSettings, seconds: float) -> Iterator[bool]:
    """Take a place to wait up to ``seconds``; yields whether one was free (and gives it back after)."""
    limit = bound(settings)
    token = uuid.uuid4().hex
    hold_ms = int((seconds + MARGIN_SEC) * 1000)
    taken = limit > 0 and bool(redis.eval(_TAKE, 1, KEY, token, limit, hold_ms))
    try:
        yield taken
    finally:
        if taken:
            redis.zrem(KEY, token)
