"""The OGC API – Processes job model over RQ's job records.

RQ already keeps every job in Redis with its state in a registry per queue; this module reads them and
speaks OGC: ``accepted``/``running``/``successful``/``failed``/``dismissed``, progress 0–100, times and a
message safe to show (never a traceback).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from core.connections import SERIALIZER, queue
from core.logging import job_log_key
from core.queues import ALL_QUEUES

from .catalog import process_of

if TYPE_CHECKING:
    from redis import Redis


class OgcStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    DISMISSED = "dismissed"


RQ_TO_OGC = {
    JobStatus.CREATED: OgcStatus.ACCEPTED,
    JobStatus.QUEUED: OgcStatus.ACCEPTED,
    JobStatus.SCHEDULED: OgcStatus.ACCEPTED,
    JobStatus.DEFERRED: OgcStatus.ACCEPTED,
    JobStatus.STARTED: OgcStatus.RUNNING,
    JobStatus.FINISHED: OgcStatus.SUCCESSFUL,
    JobStatus.FAILED: OgcStatus.FAILED,
    JobStatus.STOPPED: OgcStatus.DISMISSED,
    JobStatus.CANCELED: OgcStatus.DISMISSED,
}


@dataclass(frozen=True)
class JobView:
    """One job as the job API shows it."""

    job: Job
    process_id: str
    status: OgcStatus

    @property
    def id(self) -> str:
        return self.job.id

    def status_info(self, links: list[dict[str, str]]) -> dict[str, Any]:
        """The OGC ``statusInfo`` document."""
        job = self.job
        return {
            "type": "process",
            "processID": self.process_id,
            "jobID": job.id,
            "status": self.status.value,
            "message": self.message(),
            "created": _iso(job.created_at),
            "started": _iso(job.started_at),
            "finished": _iso(job.ended_at) if self.status in _ENDED else None,
            "updated": _iso(_updated(job)),
            "progress": self.progress(),
            "links": links,
        }

    def progress(self) -> int:
        if self.status is OgcStatus.SUCCESSFUL:
            return 100
        value = self.job.meta.get("progress")
        return int(value) if isinstance(value, (int, float)) else 0

    def message(self) -> str:
        meta = self.job.meta
        if self.status is OgcStatus.FAILED:
            code = meta.get("error_type", "unknown")
            return f"{code}: {meta.get('error_message') or 'the job failed'}"
        if self.status is OgcStatus.DISMISSED:
            return "Dismissed"
        if self.status is OgcStatus.SUCCESSFUL:
            return "Finished"
        if self.status is OgcStatus.RUNNING:
            return str(meta.get("message") or meta.get("stage") or "Running")
        return "Waiting in the queue"


_ENDED = (OgcStatus.SUCCESSFUL, OgcStatus.FAILED, OgcStatus.DISMISSED)


def _updated(job: Job) -> datetime | None:
    moments = [m for m in (job.created_at, job.enqueued_at, job.started_at, job.last_heartbeat, job.ended_at) if m]
    return max(moments, key=_aware) if moments else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return _aware(moment).isoformat().replace("+00:00", "Z") if moment else None


def view(job: Job) -> JobView | None:
    """The job as a process job, or None when it is internal plumbing (a callback, a delivery tick)."""
    process_id = process_of(job)
    if process_id is None:
        return None
    try:
        status = RQ_TO_OGC.get(JobStatus(job.get_status(refresh=False)), OgcStatus.ACCEPTED)
    except (InvalidJobOperation, ValueError):
        return None
    return JobView(job, process_id, status)


def fetch(redis: Redis, job_id: str) -> JobView | None:
    """The job ``job_id``, or None when there is no such process job."""
    try:
        job = Job.fetch(job_id, connection=redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return None
    return view(job)


SOURCES: tuple[tuple[str, frozenset[OgcStatus]], ...] = (
    ("started", frozenset({OgcStatus.RUNNING})),
    ("queued", frozenset({OgcStatus.ACCEPTED})),
    ("scheduled", frozenset({OgcStatus.ACCEPTED})),
    ("deferred", frozenset({OgcStatus.ACCEPTED})),
    ("failed", frozenset({OgcStatus.FAILED, OgcStatus.DISMISSED})),
    ("finished", frozenset({OgcStatus.SUCCESSFUL})),
    ("canceled", frozenset({OgcStatus.DISMISSED})),
)
"""Where RQ keeps a queue's jobs, in the order ``/jobs`` pages through them, and the statuses found there
(a stopped job is in the failed registry)."""
CHUNK = 50
MAX_SCANNED = 2000
"""Job records one page reads at most: a page of internal jobs (callbacks, drains) ends early, with a
``next`` link, instead of reading every record."""


@dataclass(frozen=True)
class JobPage:
    """One page of ``/jobs``: the process jobs found, and where the next page starts (None: no more)."""

    views: list[JobView]
    next_offset: int | None


@dataclass(frozen=True)
class _Source:
    queue_name: str
    kind: str

    def key(self, redis: Redis) -> str:
        q = queue(self.queue_name, redis)
        return q.key if self.kind == "queued" else getattr(q, f"{self.kind}_job_registry").key

    def ids(self, redis: Redis, start: int, count: int) -> list[str]:
        """Ids from position ``start`` (0: the newest), at most ``count`` of them."""
        q = queue(self.queue_name, redis)
        if self.kind == "queued":  # a list, newest at its tail
            total = q.count
            first = max(0, total - start - count)
            return list(reversed(q.get_job_ids(first, max(0, total - start - first))))
        registry = getattr(q, f"{self.kind}_job_registry")
        ids: list[str] = registry.get_job_ids(start, start + count - 1, desc=True, cleanup=False)
        return ids


def page_jobs(
    redis: Redis,
    *,
    queues: Iterable[str] = ALL_QUEUES,
    processes: Iterable[str] = (),
    statuses: Iterable[str] = (),
    offset: int = 0,
    limit: int = 10,
) -> JobPage:
    """Process jobs from position ``offset`` of the queues' lists and registries (running, waiting,
    failed, finished, dismissed; newest first in each), reading records a chunk at a time."""
    wanted_processes, wanted_statuses = set(processes), {OgcStatus(value) for value in statuses}
    sources = [
        _Source(name, kind)
        for kind, found in SOURCES
        if not wanted_statuses or found & wanted_statuses
        for name in queues
    ]
    sizes = _sizes(redis, sources)
    views: list[JobView] = []
    position, scanned = offset, 0
    while len(views) < limit and scanned < MAX_SCANNED:
        ids = _ids_at(redis, sources, sizes, position, min(CHUNK, MAX_SCANNED - scanned))
        if not ids:
            break
        for job in Job.fetch_many(ids, connection=redis, serializer=SERIALIZER):
            position, scanned = position + 1, scanned + 1
            found = view(job) if job is not None else None
            if (
                found is not None
                and (not wanted_processes or found.process_id in wanted_processes)
                and (not wanted_statuses or found.status in wanted_statuses)
            ):
                views.append(found)
                if len(views) == limit:
                    break
    return JobPage(views, position if position < sum(sizes) else None)


def _sizes(redis: Redis, sources: list[_Source]) -> list[int]:
    with redis.pipeline(transaction=False) as pipe:
        for source in sources:
            if source.kind == "queued":
                pipe.llen(source.key(redis))
            else:
                pipe.zcard(source.key(redis))
        return [int(size) for size in pipe.execute()]


def _ids_at(redis: Redis, sources: list[_Source], sizes: list[int], position: int, count: int) -> list[str]:
    """Up to ``count`` ids from ``position`` of the sources laid end to end (from one source)."""
    for source, size in zip(sources, sizes, strict=True):
        if position < size:
            return source.ids(redis, position, min(count, size - position))
        position -= size
    return []


def dismiss(redis: Redis, job_view: JobView) -> None:
    """Cancel a waiting job, stop a running one (its process group is killed), forget an ended one."""
    job = job_view.job
    if job_view.status is OgcStatus.ACCEPTED:
        job.cancel()
    elif job_view.status is OgcStatus.RUNNING:
        send_stop_job_command(redis, job.id, serializer=SERIALIZER)
    else:
        redis.delete(job_log_key(job.id))
        job.delete()


def job_log(redis: Redis, job_id: str) -> list[str]:
    return [line.decode("utf-8", "replace") for line in redis.lrange(job_log_key(job_id), 0, -1)]
