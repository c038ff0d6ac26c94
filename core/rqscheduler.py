"""rq's scheduler as every ``./hdxrq.py worker --with-scheduler`` runs it: on standby, taking over in seconds.

rq moves due scheduled jobs (callback retries, scheduled CKAN calls, rq's ``Retry`` intervals) onto their
queues from a scheduler process that one worker forks after taking a lock per queue
(``rq:scheduler-lock:<queue>``, 61 s TTL, refreshed every second). Left as rq 3.0 has it, a worker that
did not get the locks starts no scheduler process and tries the locks again only in its maintenance
run (every 2 minutes here, and not while it is busy with a job), and a lock whose holder was SIGKILLed
lingers for its full TTL: scheduled work stood still for about 140 s. Here:

* every worker started without ``--burst`` runs its scheduler process, which tries the locks it lacks
  every second (rq's ``interval``) instead of every two minutes;
* a lock that no heartbeat refreshed for :data:`TAKEOVER_AFTER_SEC` belongs to a dead (or hung) scheduler:
  it is deleted, atomically and only while it is that stale, and taken;
* a scheduler process stops with its worker (a parent-death signal), releasing its locks, instead of
  living on as an orphan; and it is forked without its worker's idle Redis sockets: a copy of the socket
  the worker blocks on for jobs would keep a SIGKILLed worker's ``BLPOP`` open in Redis while the
  scheduler lives, and Redis would hand the next job to that dead reader (the takeover test lost its job
  this way in 3 of 21 runs before, none of 20 after).

So scheduled work resumes about :data:`TAKEOVER_AFTER_SEC` + 1 s after the worker holding the locks is
killed, whoever holds them next.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from typing import Any

from redis import Redis
from rq.scheduler import RQScheduler
from rq.utils import as_text

log = logging.getLogger(__name__)

TAKEOVER_AFTER_SEC = 10
"""A scheduler refreshes its locks every second; one silent for this long is dead or hung. Far above a
loop's usual length (milliseconds), and short enough for scheduled work to resume within 30 s."""
LOCK_TTL_FLOOR_SEC = 60
"""rq sets a scheduler lock's TTL to the scheduler's interval + 60 s at every refresh: a TTL below
60 - N seconds means no refresh for more than N seconds, whatever the holder's interval."""
_PR_SET_PDEATHSIG = 1

# KEYS[1] = lock key, ARGV[1] = TTL in ms below which the lock is stale; returns the holder it removed.
_RELEASE_STALE_LOCK = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and ttl < tonumber(ARGV[1]) then
    local holder = redis.call('GET', KEYS[1])
    redis.call('DEL', KEYS[1])
    return holder
end
return false
"""


class StandbyScheduler(RQScheduler):
    """rq's scheduler that keeps trying for the locks it lacks and takes stale ones over."""

    _worker_pid = 0

    def __init__(self, *args: Any, worker_connection: Redis | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._worker_connection = worker_connection

    @property
    def should_reacquire_locks(self) -> bool:
        return bool(self._queue_names != self.acquired_locks)  # rq waits two minutes between tries

    def acquire_locks(self, auto_start: bool = False) -> set[str]:
        self.release_stale_locks()
        return super().acquire_locks(auto_start=auto_start)  # type: ignore[no-untyped-call,no-any-return]

    def release_stale_locks(self) -> list[str]:
        """Delete the locks of queues we lack whose holder stopped refreshing them; their queue names."""
        script = self.connection.register_script(_RELEASE_STALE_LOCK)
        below_ms = (LOCK_TTL_FLOOR_SEC - TAKEOVER_AFTER_SEC) * 1000
        released = []
        for name in sorted(self._queue_names - self.acquired_locks):
            holder = script(keys=[self.get_locking_key(name)], args=[below_ms])
            if holder:
                log.warning(
                    "scheduler lock for %s: holder %s silent for over %ss, taking over",
                    name,
                    as_text(holder),
                    TAKEOVER_AFTER_SEC,
                )
                released.append(name)
        return released

    def start(self) -> Any:
        """Fork the scheduler process (in the worker, between jobs: no connection of the pool is busy)."""
        self._worker_pid = os.getpid()
        if self._worker_connection is not None:
            # The worker reconnects on its next command; the child inherits none of these sockets.
            self._worker_connection.connection_pool.disconnect(inuse_connections=False)
        return super().start()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def _install_signal_handlers(self) -> None:
        """In the scheduler process, first thing: rq's handlers, then stop (SIGTERM) when the worker dies."""
        super()._install_signal_handlers()  # type: ignore[no-untyped-call]
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:  # not Linux: the scheduler outlives a killed worker, as in rq
            return
        if os.getppid() != self._worker_pid:  # the worker died before the signal was armed
            self.request_stop()  # type: ignore[no-untyped-call]
