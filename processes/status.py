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
from core.settings import ALL_QUEUES

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


def all_job_ids(redis: Redis) -> set[str]:
    """Ids of every job RQ still holds, in any state, on every queue."""
    ids: set[str] = set()
    for name in ALL_QUEUES:
        q = queue(name, redis)
        ids.update(q.get_job_ids())
        for registry in (
            q.started_job_registry,
            q.finished_job_registry,
            q.failed_job_registry,
            q.canceled_job_registry,
            q.scheduled_job_registry,
            q.deferred_job_registry,
        ):
            ids.update(registry.get_job_ids())
    return ids


def list_jobs(redis: Redis, *, processes: Iterable[str] = (), statuses: Iterable[str] = ()) -> list[JobView]:
    """Process jobs, newest first, optionally only of some processes and statuses."""
    wanted_processes, wanted_statuses = set(processes), set(statuses)
    jobs = Job.fetch_many(sorted(all_job_ids(redis)), connection=redis, serializer=SERIALIZER)
    views = [v for v in (view(job) for job in jobs if job is not None) if v is not None]
    views = [
        v
        for v in views
        if (not wanted_processes or v.process_id in wanted_processes)
        and (not wanted_statuses or v.status.value in wanted_statuses)
    ]
    return sorted(views, key=lambda v: (_aware(v.job.created_at), v.id), reverse=True)


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
