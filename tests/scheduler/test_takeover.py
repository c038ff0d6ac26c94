"""The worker holding rq's scheduler is SIGKILLed: scheduled work resumes on another worker within 30 s.

Two real ``./hdxrq.py worker --with-scheduler`` processes, each leading its own process group. The one
whose scheduler process holds the lock of ``default_scheduler_q`` is killed, either with its scheduler
(the whole group, as an OOM kill or a lost machine does: the lock lingers until it is seen to be stale)
or alone (its scheduler process must stop with it, releasing the lock, rather than live on orphaned).
A scheduled CKAN call made due at the moment of the kill must reach the fake CKAN within 30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from rq.scheduler import RQScheduler
from rq.utils import as_text

from core import procs
from core.queues import QueueName
from core.runtime import Runtime
from tests.fakes import FakeCkan
from tests.waiting import wait_until

from .conftest import SchedulerClock

LOCK = RQScheduler.get_locking_key(QueueName.SCHEDULER)
RESUME_WITHIN_SEC = 30


def scheduler_of(runtime: Runtime) -> RQScheduler | None:
    """The scheduler holding the lock of ``default_scheduler_q``, once its process has registered."""
    name = runtime.redis.get(LOCK)
    if name is None:
        return None
    try:
        return RQScheduler.fetch(as_text(name), runtime.redis)
    except Exception:  # acquired, not registered yet
        return None


@pytest.mark.parametrize("victim", ["the worker and its scheduler", "the worker alone"])
def test_scheduled_work_resumes_within_30s_after_the_scheduler_holder_is_sigkilled(
    victim: str,
    runtime: Runtime,
    add_job: Callable[..., dict[str, Any]],
    clock: SchedulerClock,
    fake_ckan: FakeCkan,
    background_workers: Callable[..., list[subprocess.Popen[bytes]]],
) -> None:
    add_job(action="status_show", sch_minutes=10, api_params={"id": "after the kill"})
    [job_id] = clock.pending_job_ids()
    workers = background_workers(2, "--with-scheduler", QueueName.SCHEDULER)
    holding = wait_until(lambda: scheduler_of(runtime), what="a worker's scheduler to hold the lock")
    parents = procs.parent_pids()
    [holder] = [worker for worker in workers if parents.get(holding.pid) == worker.pid]
    [survivor] = [worker for worker in workers if worker is not holder]

    if victim == "the worker alone":
        os.kill(holder.pid, signal.SIGKILL)
    else:
        os.killpg(holder.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    clock.make_due_now(job_id)

    [call] = fake_ckan.wait_for_action("status_show", timeout=RESUME_WITHIN_SEC)
    assert call.json() == {"id": "after the kill"}
    # The killed worker's scheduler may still move this one job in its last second (worker alone); what
    # carries on is the survivor's, within the same 30 s, and the dead worker's does not live on.
    left = max(0.0, RESUME_WITHIN_SEC - (time.monotonic() - killed_at))
    wait_until(
        lambda: survivor_holds(runtime, survivor.pid), timeout=left, what="the survivor's scheduler to hold the lock"
    )
    wait_until(lambda: not procs.alive(holding.pid), timeout=5, what="the dead worker's scheduler to stop")


def survivor_holds(runtime: Runtime, survivor_pid: int) -> bool:
    holding = scheduler_of(runtime)
    return holding is not None and procs.parent_pids().get(holding.pid) == survivor_pid
