"""Test-only job functions: workers run them because the tests name this module in
``HDXRQ_EXTRA_JOB_MODULES``, whose :func:`register` adds them to the job registry."""

from __future__ import annotations

import logging
import os

from core import runtime
from core.registry import Registry

log = logging.getLogger("core.testjobs")


def record(key: str, value: str) -> str:
    """Write ``value`` under ``key`` in the RQ Redis and log a line: proves a worker ran the job."""
    rt = runtime.current()
    rt.redis.rpush(key, value)
    log.info("recorded %s", value)
    return value


def fail(message: str) -> None:
    raise RuntimeError(message)


def wait_for_go(key: str, seconds: int) -> str:
    """Block until the test pushes to ``key`` (or ``seconds`` pass): a job that takes as long as the test wants."""
    rt = runtime.current()
    rt.redis.rpush(f"{key}:started", "1")
    got = rt.redis.blpop([key], timeout=seconds)
    rt.redis.rpush(f"{key}:finished", "1" if got else "timed-out")
    return "went" if got else "timed-out"


def record_parent(key: str) -> int:
    """Push the pid of the process that runs the job's parent: tells a forked work horse from the worker."""
    rt = runtime.current()
    rt.redis.rpush(key, os.getppid())
    return os.getppid()


def register(registry: Registry) -> None:
    """Let workers of the tests run these functions."""
    registry.job(record, fail, wait_for_go, record_parent)
