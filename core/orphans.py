"""Finding queued jobs that no queue holds any more, and putting them back.

A worker listening on several queues takes a job with ``BLPOP``: from that moment until it marks the job
started (a few milliseconds later) the job id is in no queue and no registry. If Redis goes away in that
window (a restart, a failover) the worker dies and the job is orphaned: its record still says ``queued``,
but nothing will ever run it, and rq's own maintenance cannot see it. (A single-queue worker moves the id
to the queue's intermediate list instead; rq fails such a job after a while, although it never ran.)

The sweep finds job records whose status is ``queued`` but whose id is neither on their queue nor started,
and puts them back at the front of their queue once two sweeps at least :data:`ORPHAN_AFTER_SEC` apart
have seen them so: a live worker that has just popped a job marks it started long before that.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, cast

from redis.exceptions import WatchError
from rq.intermediate_queue import IntermediateQueue
from rq.registry import StartedJobRegistry
from rq.utils import as_text, parse_composite_key

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

ORPHAN_AFTER_SEC = 60.0
FIRST_SEEN_KEY = "hdxrq:orphans:first-seen"
"""Hash of job id -> when a sweep first saw the job orphaned (epoch seconds)."""
LOCK_KEY = "hdxrq:orphans:lock"
JOB_KEY_PREFIX = "rq:job:"
QUEUE_KEY_PREFIX = "rq:queue:"
SCAN_BATCH = 1000


def sweep(redis: Redis, *, now: float | None = None, orphan_after: float = ORPHAN_AFTER_SEC) -> list[str]:
    """Requeue the jobs that two sweeps ``orphan_after`` seconds apart found orphaned; returns their ids.

    Only one sweep runs at a time across workers; a sweep that finds the lock taken does nothing.
    """
    moment = time.time() if now is None else now
    if not redis.set(LOCK_KEY, "1", nx=True, ex=300):
        return []
    try:
        orphans = find_orphans(redis)
        first_seen = {as_text(key): float(value) for key, value in redis.hgetall(FIRST_SEEN_KEY).items()}
        due = [job for job in orphans if moment - first_seen.get(job, moment) >= orphan_after]
        requeued = [job for job in due if requeue(redis, job, orphans[job])]
        _remember(redis, {job: first_seen.get(job, moment) for job in orphans if job not in requeued})
        return requeued
    finally:
        redis.delete(LOCK_KEY)


def find_orphans(redis: Redis) -> dict[str, str]:
    """Job id -> queue name of every ``queued`` job that is neither on its queue nor started."""
    queued_by_origin: dict[str, list[str]] = defaultdict(list)
    for job_id, origin in _queued_jobs(redis):
        queued_by_origin[origin].append(job_id)
    orphans: dict[str, str] = {}
    for origin, job_ids in queued_by_origin.items():
        held = _ids_on_queue(redis, origin) | _started_ids(redis, _started_key(redis, origin))
        orphans.update((job_id, origin) for job_id in job_ids if job_id not in held)
    return orphans


def requeue(redis: Redis, job_id: str, origin: str) -> bool:
    """Put an orphaned job back at the front of its queue, unless a worker took it meanwhile."""
    job_key, queue_key = JOB_KEY_PREFIX + job_id, QUEUE_KEY_PREFIX + origin
    intermediate = IntermediateQueue.get_intermediate_queue_key(queue_key)
    started_key = _started_key(redis, origin)
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(job_key, queue_key, intermediate, started_key)
            still_orphaned = (
                as_text(pipe.hget(job_key, "status") or b"") == "queued"
                and pipe.lpos(queue_key, job_id) is None
                and job_id not in _started_ids(pipe, started_key)
            )
            if not still_orphaned:
                return False
            pipe.multi()
            pipe.lrem(intermediate, 0, job_id)
            pipe.lpush(queue_key, job_id)
            pipe.sadd("rq:queues", queue_key)
            pipe.execute()
        except WatchError:
            return False  # something touched the job or its queue: look again at the next sweep
    log.warning("job %s was taken from %s by a worker that died before starting it: requeued", job_id, origin)
    return True


def _queued_jobs(redis: Redis) -> list[tuple[str, str]]:
    """(job id, queue name) of every job record whose status is ``queued``."""
    found: list[tuple[str, str]] = []
    batch: list[bytes] = []

    def read(keys: list[bytes]) -> None:
        with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "status", "origin")
            for key, (status, origin) in zip(keys, pipe.execute(), strict=True):
                if status == b"queued" and origin:
                    found.append((as_text(key)[len(JOB_KEY_PREFIX) :], as_text(origin)))

    for key in redis.scan_iter(match=JOB_KEY_PREFIX + "*", count=SCAN_BATCH, _type="HASH"):
        batch.append(key)
        if len(batch) >= SCAN_BATCH:
            read(batch)
            batch = []
    if batch:
        read(batch)
    return found


def _ids_on_queue(redis: Redis, origin: str) -> set[str]:
    return {as_text(job_id) for job_id in redis.lrange(QUEUE_KEY_PREFIX + origin, 0, -1)}


def _started_key(redis: Redis, origin: str) -> str:
    return StartedJobRegistry(origin, connection=redis).key


def _started_ids(redis: Redis, started_key: str) -> set[str]:
    members = cast("list[bytes]", redis.zrange(started_key, 0, -1))
    return {parse_composite_key(as_text(member))[0] for member in members}


def _remember(redis: Redis, first_seen: dict[str, float]) -> None:
    with redis.pipeline(transaction=True) as pipe:
        pipe.delete(FIRST_SEEN_KEY)
        if first_seen:
            pipe.hset(FIRST_SEEN_KEY, mapping={job_id: seen for job_id, seen in first_seen.items()})
        pipe.execute()
