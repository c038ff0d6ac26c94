"""Schedules in the RQ Redis, and their tick jobs on ``default_scheduler_q``.

A schedule is one hash, ``hdxrq:scheduler:schedule:<id>``, listed in the sorted set
``hdxrq:scheduler:schedules`` (score: creation time). Its next call is one RQ job with the deterministic id
``hdxrq-schedule-<id>-<tick>``, put in rq's ``ScheduledJobRegistry`` with ``enqueue_at(..., unique=True)``:
the scheduler that runs inside the workers moves it onto the queue when it is due, and one worker runs it.

The hash's ``next_tick`` field is the chain's single source of truth: a tick job first moves it forward
with a compare-and-set (only the job of the current tick can), then schedules the next tick job. A tick job
run twice, or by two workers, therefore schedules the next tick once.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import WatchError
from rq import Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job

from core.connections import SERIALIZER, queue
from core.queues import QueueName

from .schedules import Kind, ScheduleSpec, iso
from .settings import SchedulerSettings

if TYPE_CHECKING:
    from redis import Redis

    from core.settings import CoreSettings

log = logging.getLogger(__name__)

INDEX_KEY = "hdxrq:scheduler:schedules"
KEY_PREFIX = "hdxrq:scheduler:schedule:"
JOB_ID_PREFIX = "hdxrq-schedule-"
TICK_FUNCTION = "scheduler.tasks.run_scheduled_call"
ACTIVE, DONE = "scheduled", "done"
ERROR_TEXT_LIMIT = 300

_RECORD_IF_EXISTS = """
if redis.call('exists', KEYS[1]) == 0 then
  return 0
end
redis.call('hset', KEYS[1], 'last_run', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('hset', KEYS[1], 'done_tick', ARGV[2])
  redis.call('hincrby', KEYS[1], 'runs', 1)
end
return 1
"""


@dataclass(frozen=True)
class Schedule:
    """A stored schedule: its spec plus state, next tick and the last call's outcome."""

    id: str
    spec: ScheduleSpec
    created_at: str
    state: str
    next_tick: int | None
    runs: int
    last_run: dict[str, Any] | None
    done_tick: int

    @property
    def description(self) -> str:
        return self.spec.description

    def to_json(self) -> dict[str, Any]:
        """The list_jobs entry: the contract's id, created_at, description, then the rest."""
        timing: dict[str, Any] = {"type": self.spec.kind.value, "timezone": "UTC"}
        if self.spec.kind is Kind.INTERVAL:
            timing["interval_minutes"] = self.spec.interval_minutes
        elif self.spec.kind is Kind.CRON:
            timing["cron"] = self.spec.cron
        else:
            timing["run_at"] = iso(self.spec.first_tick)
        return {
            "id": self.id,
            "created_at": self.created_at,
            "description": self.description,
            "action": self.spec.action,
            "method": self.spec.method.lower(),
            "api_params": self.spec.api_params,
            "schedule": timing,
            "state": self.state,
            "next_run": iso(self.next_tick),
            "runs": self.runs,
            "last_run": self.last_run,
        }


def schedule_key(schedule_id: str) -> str:
    return KEY_PREFIX + schedule_id


def tick_job_id(schedule_id: str, tick: int) -> str:
    """The id of the job that makes the call due at ``tick`` (the same id however often it is scheduled)."""
    return f"{JOB_ID_PREFIX}{schedule_id}-{tick}"


def create(redis: Redis, spec: ScheduleSpec, settings: CoreSettings, now: datetime) -> Schedule:
    """Store a new schedule and schedule its first call."""
    schedule_id = uuid.uuid4().hex
    fields = {
        "id": schedule_id,
        "action": spec.action,
        "method": spec.method,
        "api_params": json.dumps(spec.api_params),
        "kind": spec.kind.value,
        "first_tick": spec.first_tick,
        "interval_minutes": spec.interval_minutes or "",
        "cron": spec.cron or "",
        "created_at": now.astimezone(UTC).isoformat(),
        "state": ACTIVE,
        "next_tick": spec.first_tick,
        "runs": 0,
        "done_tick": 0,
    }
    with redis.pipeline() as pipe:
        pipe.hset(schedule_key(schedule_id), mapping=fields)
        pipe.zadd(INDEX_KEY, {schedule_id: now.timestamp()})
        pipe.execute()
    schedule = load(redis, schedule_id)
    assert schedule is not None
    ensure_tick_job(redis, schedule, settings)
    log.info("scheduled %s as %s", spec.description, schedule_id)
    return schedule


def load(redis: Redis, schedule_id: str) -> Schedule | None:
    """The schedule with this id, or ``None`` (cancelled, expired, never existed)."""
    raw = redis.hgetall(schedule_key(schedule_id))
    return _from_hash(raw) if raw else None


def all_schedules(redis: Redis) -> list[Schedule]:
    """Every stored schedule, oldest first; index entries of expired schedules are dropped."""
    ids = [value.decode() for value in redis.zrange(INDEX_KEY, 0, -1)]
    with redis.pipeline() as pipe:
        for schedule_id in ids:
            pipe.hgetall(schedule_key(schedule_id))
        raws = pipe.execute()
    gone = [schedule_id for schedule_id, raw in zip(ids, raws, strict=True) if not raw]
    if gone:
        redis.zrem(INDEX_KEY, *gone)
    return [_from_hash(raw) for raw in raws if raw]


def cancel(redis: Redis, schedule_id: str) -> bool:
    """Delete a schedule and its pending call; a tick job already running finds it gone and stops there."""
    schedule = load(redis, schedule_id)
    with redis.pipeline() as pipe:
        pipe.delete(schedule_key(schedule_id))
        pipe.zrem(INDEX_KEY, schedule_id)
        deleted, _ = pipe.execute()
    if schedule is not None and schedule.next_tick is not None:
        _delete_pending_job(redis, tick_job_id(schedule_id, schedule.next_tick))
    return bool(deleted)


def advance(redis: Redis, schedule_id: str, tick: int, now: int, settings: CoreSettings) -> int | None:
    """Move the schedule past ``tick`` and schedule the next call, unless another run already did.

    Returns the next tick this run scheduled, or ``None`` (one-shot finished, cancelled, or not the
    current tick: a duplicate run).
    """
    key = schedule_key(schedule_id)
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.hgetall(key)
                if not raw or _int(raw.get(b"next_tick")) != tick:
                    pipe.unwatch()
                    return None
                schedule = _from_hash(raw)
                following = schedule.spec.tick_after(tick, now)
                pipe.multi()
                if following is None:
                    pipe.hset(key, mapping={"next_tick": "", "state": DONE})
                    pipe.expire(key, int(SchedulerSettings.of(settings).keep_done_days * 86400))
                else:
                    pipe.hset(key, "next_tick", following)
                pipe.execute()
                break
            except WatchError:
                continue
    if following is not None:
        ensure_tick_job(redis, load(redis, schedule_id), settings)
    return following


def ensure_tick_job(redis: Redis, schedule: Schedule | None, settings: CoreSettings) -> None:
    """Make sure the job of the schedule's next tick exists (idempotent: rq refuses a duplicate id)."""
    if schedule is None or schedule.state != ACTIVE or schedule.next_tick is None:
        return
    intervals = list(SchedulerSettings.of(settings).retry_intervals)
    retry = Retry(max=len(intervals), interval=intervals) if intervals else None
    try:
        queue(QueueName.SCHEDULER, redis).enqueue_at(
            datetime.fromtimestamp(schedule.next_tick, UTC),
            TICK_FUNCTION,
            args=(schedule.id, schedule.next_tick),
            job_id=tick_job_id(schedule.id, schedule.next_tick),
            description=f"Scheduled CKAN call {schedule.description}",
            job_timeout=max(60, int(settings.ckan.timeout_sec * 3)),
            retry=retry,
            meta={"schedule_id": schedule.id},
            unique=True,
        )
    except DuplicateJobError:
        pass


def record_result(redis: Redis, schedule_id: str, result: dict[str, Any], *, final: bool, tick: int) -> None:
    """Store the outcome of a call on the schedule (never re-creating a cancelled one)."""
    final_tick = str(tick) if final else ""
    redis.eval(_RECORD_IF_EXISTS, 1, schedule_key(schedule_id), json.dumps(result), final_tick)


def repair(redis: Redis, settings: CoreSettings) -> int:
    """Re-create missing tick jobs (a crash between moving a schedule forward and scheduling its job)."""
    repaired = 0
    for schedule in all_schedules(redis):
        if schedule.state != ACTIVE or schedule.next_tick is None:
            continue
        if not Job.exists(tick_job_id(schedule.id, schedule.next_tick), connection=redis):
            ensure_tick_job(redis, schedule, settings)
            repaired += 1
    return repaired


def _delete_pending_job(redis: Redis, job_id: str) -> None:
    try:
        job = Job.fetch(job_id, connection=redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return
    job.delete()


def _from_hash(raw: dict[bytes, bytes]) -> Schedule:
    value = {key.decode(): item.decode() for key, item in raw.items()}
    spec = ScheduleSpec(
        action=value["action"],
        method=value["method"],
        kind=Kind(value["kind"]),
        first_tick=int(value["first_tick"]),
        api_params=json.loads(value.get("api_params") or "{}"),
        interval_minutes=_int(value.get("interval_minutes")),
        cron=value.get("cron") or None,
    )
    return Schedule(
        id=value["id"],
        spec=spec,
        created_at=value["created_at"],
        state=value.get("state", ACTIVE),
        next_tick=_int(value.get("next_tick")),
        runs=int(value.get("runs") or 0),
        last_run=json.loads(value["last_run"]) if value.get("last_run") else None,
        done_tick=int(value.get("done_tick") or 0),
    )


def _int(value: bytes | str | None) -> int | None:
    if value in (None, b"", ""):
        return None
    return int(value)
