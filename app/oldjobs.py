"""Reading the jobs the old HDX Job Processor left in Redis, without ever running any of them.

The old service (gisrestlayer 0.9.x) ran rq 1.13 with its default serializer: a job's ``data`` field in
``rq:job:<id>`` is ``zlib.compress(pickle.dumps((func_name, instance, args, kwargs)))``. Unpickling runs
whatever the pickle names, so these records are read with :func:`restricted_loads`: a pickle may build
dicts, lists, tuples, strings, bytes, numbers, booleans, ``None`` and ``datetime``/``timedelta`` values
(rq-scheduler's jobs carry a ``timedelta``), and naming anything else (a class, a function of any module)
stops the load before that name is looked up. The loaded value is walked once more, so a set or a
bytearray built by pickle's own opcodes is refused too.

Where the old jobs are (CONTRACTS.md §5, rq 1.13 and rq-scheduler 0.13 key layouts):

* ``rq:queue:<queue>``: waiting jobs (a list of ids);
* ``rq:wip:<queue>``: jobs a worker had started when the old service stopped (a sorted set of ids;
  rq 3.0 writes ``<id>:<execution>`` members there, which are not the old service's);
* ``rq:scheduler:scheduled_jobs``: rq-scheduler's calls, scored by their run time (Unix seconds, UTC).

A record whose ``data`` is JSON is hdxrq's own job and is not reported.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis import Redis

SCHEDULED_JOBS_KEY = "rq:scheduler:scheduled_jobs"
QUEUE_KEY = "rq:queue:{}"
STARTED_KEY = "rq:wip:{}"
JOB_KEY = "rq:job:{}"
RQ_TIMESTAMPS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")
"""How rq 1.x writes ``enqueued_at`` (older releases without the microseconds)."""
MAX_DATA_BYTES = 64 * 1024 * 1024
"""A job's data is refused beyond this once decompressed (a change event of a big dataset is < 10 MB)."""

ALLOWED_GLOBALS = frozenset({("datetime", "datetime"), ("datetime", "timedelta")})
"""The only names a job's pickle may use: rq-scheduler's jobs carry a ``timedelta``."""
PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None), dt.datetime, dt.timedelta)


class Source(StrEnum):
    """Where an old job was found."""

    QUEUED = "queued"
    STARTED = "started"
    SCHEDULED = "scheduled"


class UnreadableJob(Exception):
    """An old job that cannot be read safely; the message says why (never its content)."""


@dataclass(frozen=True)
class OldJob:
    """One job of the old service, decoded."""

    id: str
    queue: str
    source: Source
    func_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    enqueued_at: str | None = None
    run_at: dt.datetime | None = None
    """For rq-scheduler's jobs: when the old service would have run it (UTC)."""

    @property
    def enqueued_time(self) -> dt.datetime | None:
        """When the old service queued the job (aware, UTC), if its record says so legibly."""
        for layout in RQ_TIMESTAMPS:
            try:
                return dt.datetime.strptime(self.enqueued_at or "", layout).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
        return None


@dataclass(frozen=True)
class Unreadable:
    """An old job that was found but could not be read; ``reason`` says why."""

    id: str
    queue: str
    source: Source
    reason: str


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnreadableJob(f"its pickle names {module}.{name}, which is not plain data")

    def persistent_load(self, pid: Any) -> Any:
        raise UnreadableJob("its pickle refers to a persistent object")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing plain data only; :class:`UnreadableJob` otherwise."""
    try:
        value = _PlainUnpickler(io.BytesIO(data)).load()
    except UnreadableJob:
        raise
    except Exception as error:  # a truncated or corrupt pickle
        raise UnreadableJob(f"its pickle is not readable ({type(error).__name__})") from None
    _check_plain(value)
    return value


def _check_plain(value: Any) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) not in PLAIN_TYPES:
            raise UnreadableJob(f"its pickle holds a {type(item).__name__}, which is not plain data")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def decode_data(compressed: bytes) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
    """``(func_name, args, kwargs)`` of an old job's ``data`` field; ``None`` when it is hdxrq's (JSON)."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, MAX_DATA_BYTES)
    except zlib.error:
        raise UnreadableJob("its data is not zlib-compressed") from None
    if inflater.unconsumed_tail:
        raise UnreadableJob(f"its data is larger than {MAX_DATA_BYTES // (1024 * 1024)} MB")
    if _is_json(data):
        return None
    value = restricted_loads(data)
    if not (isinstance(value, tuple | list) and len(value) == 4):
        raise UnreadableJob("its data is not rq's (function, instance, args, kwargs)")
    func_name, instance, args, kwargs = value
    if not isinstance(func_name, str) or instance is not None:
        raise UnreadableJob("its data does not name a plain function")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise UnreadableJob("its arguments are not rq's (args, kwargs)")
    return func_name, tuple(args), kwargs


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def find_old_jobs(redis: Redis, queues: tuple[str, ...]) -> Iterator[OldJob | Unreadable]:
    """Every job of the old service in ``queues`` and in rq-scheduler's schedule, decoded or explained."""
    for name in queues:
        for job_id in redis.lrange(QUEUE_KEY.format(name), 0, -1):
            yield from _read(redis, job_id.decode(), name, Source.QUEUED)
        for member in redis.zrange(STARTED_KEY.format(name), 0, -1):
            if b":" not in member:  # rq 3.0 (hdxrq) writes <job id>:<execution id>
                yield from _read(redis, member.decode(), name, Source.STARTED)
    for member, score in redis.zrange(SCHEDULED_JOBS_KEY, 0, -1, withscores=True):
        origin = redis.hget(JOB_KEY.format(member.decode()), "origin")
        run_at = dt.datetime.fromtimestamp(score, dt.UTC)
        yield from _read(redis, member.decode(), (origin or b"?").decode(), Source.SCHEDULED, run_at)


def _read(
    redis: Redis, job_id: str, queue: str, source: Source, run_at: dt.datetime | None = None
) -> Iterator[OldJob | Unreadable]:
    record = redis.hmget(JOB_KEY.format(job_id), "data", "enqueued_at")
    data, enqueued_at = record
    if data is None:
        yield Unreadable(job_id, queue, source, "its record rq:job:<id> is gone (expired or deleted)")
        return
    try:
        decoded = decode_data(data)
    except UnreadableJob as error:
        yield Unreadable(job_id, queue, source, str(error))
        return
    if decoded is None:
        return  # hdxrq's own job
    func_name, args, kwargs = decoded
    when = enqueued_at.decode() if enqueued_at else None
    yield OldJob(job_id, queue, source, func_name, args, kwargs, when, run_at)


def source_key(job: OldJob | Unreadable) -> str:
    """The Redis key the job's id is listed in."""
    if job.source is Source.SCHEDULED:
        return SCHEDULED_JOBS_KEY
    return (QUEUE_KEY if job.source is Source.QUEUED else STARTED_KEY).format(job.queue)
