"""What the benchmarks share besides the load generator: a free port and a private Redis database."""

from __future__ import annotations

import os
import socket

from redis import Redis

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
DB_RANGE = range(16, 128)
"""The databases tests and benchmarks take turns on (``hdxrq:test-db-lock:<db>`` in db 0 says whose)."""
LOCK_TTL_SEC = 3600


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def claim_redis_db(admin: Redis, databases: range = DB_RANGE) -> int:
    """Lock a free database for this process and return its number, emptied.

    Databases nobody holds are emptied first: a benchmark that was killed never released its own, and a
    Redis that grows by gigabytes of leftovers (and rewrites its AOF meanwhile) skews every later figure.
    """
    for db in DB_RANGE:
        if admin.set(_lock(db), "sweep", nx=True, ex=60):  # held while emptying: no one claims it meanwhile
            Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
            admin.delete(_lock(db))
    for db in databases:
        if admin.set(_lock(db), f"bench-{os.getpid()}", nx=True, ex=LOCK_TTL_SEC):
            Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
            return db
    raise SystemExit("no free Redis database")


def release_redis_db(admin: Redis, db: int) -> None:
    """Empty a claimed database and give it back."""
    Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    admin.delete(_lock(db))


def _lock(db: int) -> str:
    return f"hdxrq:test-db-lock:{db}"
