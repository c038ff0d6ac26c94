"""``./hdxrq.py migrate-old-jobs [--dry-run]``: carry the old service's waiting jobs over to hdxrq.

On the day of the switch the old HDX Job Processor's queues may still hold jobs it pickled, and
rq-scheduler its scheduled CKAN calls (CONTRACTS.md §5). Each is read without running anything
(:mod:`app.oldjobs`) and re-created as the hdxrq job with the same meaning through the door of the slice
that does that work, as the local operator: the resource, body or call comes from the old job's dict;
URLs, limits and tokens the old service froze into the dict are dropped (hdxrq uses its own settings). A
scheduled call keeps its run time.

What it does not migrate it reports with the reason, and moves the job's id off the old queue (or
schedule) into ``hdxrq:cutover:refused``, leaving the job's record untouched: no worker ever picks it up,
and an operator can still look at it. A job that carries one of the old service's credentials anywhere in
what would be carried over (say, the CKAN token in a scheduled call's parameters) is not migrated.

Running it again migrates nothing twice: each old job is written to the ledger ``hdxrq:cutover:ledger``
before the new job is created (``pending``) and marked ``done`` in the same transaction that removes the
old job's id and record. An old job the ledger already names (a run stopped between creating the new job
and marking it ``done``) is reported and set aside like a refused one, never created again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
from redis import Redis

import analyticsapi.service
import eventsapi.service
import importapi.service
import scheduler.service
from core.auth import OPERATOR
from core.errors import HdxError
from core.queues import CONTRACT_QUEUES
from core.runtime import Runtime

from .oldjobs import JOB_KEY, OldJob, Source, Unreadable, find_old_jobs, source_key

LEDGER_KEY = "hdxrq:cutover:ledger"
REFUSED_KEY = "hdxrq:cutover:refused"
PENDING, DONE = "pending", "done"
CREDENTIAL_KEYS = re.compile(r"(^|_)(api_?key|pass|password|passwd|secret|authorization)$", re.IGNORECASE)
"""Keys under which the old service put credentials in a job's dict (``ckan_api_key``, ``db_pass``)."""
OLD_SCHEDULER_LOCK = "rq:scheduler_lock"
"""rq-scheduler 0.13 holds this key while it runs."""
DELAY_FIELDS = ("sch_minutes", "sch_hours", "sch_days")


class NotMigrated(Exception):
    """The job cannot be carried over; the message says why (never the job's content)."""


@dataclass(frozen=True)
class Plan:
    """What an old job becomes: a description, and the call that creates it (returns what was created)."""

    description: str
    payload: Any
    """What is carried over, checked for credentials before anything is created."""
    create: Callable[[Runtime], str]


@dataclass
class Outcome:
    """What happened to one old job."""

    job_id: str
    queue: str
    function: str
    state: str
    detail: str

    def line(self) -> str:
        return f"{self.state:<17} {self.queue:<19} {self.job_id:<36} {self.function}: {self.detail}"


@dataclass
class Report:
    """The outcome of every job found, after those an earlier run refused."""

    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(outcome.state == state for outcome in self.outcomes)

    @property
    def not_migrated(self) -> int:
        return self.count("not migrated")


# --- what each old function becomes ---


def _dict_argument(job: OldJob) -> dict[str, Any]:
    """The one dict the old service passed (``args=[dict]``; rq-scheduler's calls: ``args=dict`` keyword)."""
    candidates = [*job.args, *job.kwargs.values()]
    if len(candidates) != 1 or not isinstance(candidates[0], dict):
        raise NotMigrated("its arguments are not the one dict the old service passed")
    return candidates[0]


def _text(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value:
        raise NotMigrated(f"its dict has no {key}")
    return value


def _plan_import(job: OldJob) -> Plan:
    arguments = _dict_argument(job)
    dataset_id, resource_id = _text(arguments, "dataset_id"), _text(arguments, "resource_id")
    url, url_type = _text(arguments, "download_url"), str(arguments.get("url_type") or "")

    def create(rt: Runtime) -> str:
        return importapi.service.request_import(rt, OPERATOR, dataset_id, resource_id, url, url_type)

    return Plan(f"geopreview import of resource {resource_id}", [dataset_id, resource_id, url, url_type], create)


def _plan_analytics(job: OldJob) -> Plan:
    payload = _dict_argument(job)

    def create(rt: Runtime) -> str:
        answer = analyticsapi.service.accept_event(rt, OPERATOR, payload)
        if answer.status != 200:
            raise NotMigrated(f"hdxrq refuses the event: {answer.body.get('error')}")
        if answer.request_drain:
            analyticsapi.service.request_drain(rt)
        return "analytics event buffered for delivery"

    return Plan(f"analytics event {str(payload.get('event_name'))[:80]!r}", payload, create)


def _plan_change_events(job: OldJob) -> Plan:
    arguments = _dict_argument(job)
    body = {key: arguments.get(key) for key in ("username", "old_dataset_dict", "new_dataset_dict")}
    raw = json.dumps(body).encode()

    def create(rt: Runtime) -> str:
        # the events are stamped when the write was reported, not when the backlog is migrated
        return eventsapi.service.accept_change_events(rt, OPERATOR, raw, requested_at=job.enqueued_time)

    return Plan(f"change events of a write by {str(body['username'])[:80]!r}", body, create)


def _plan_file_structure_check(job: OldJob) -> Plan:
    arguments = _dict_argument(job)
    dataset_id, resource_id = _text(arguments, "dataset_id"), _text(arguments, "resource_id")
    url, history = _text(arguments, "hxl_proxy_source_info_url"), arguments.get("fs_check_info")

    def create(rt: Runtime) -> str:
        return eventsapi.service.request_file_structure_check(rt, OPERATOR, dataset_id, resource_id, url, history)

    return Plan(f"file-structure check of resource {resource_id}", [dataset_id, resource_id, url, history], create)


def _plan_scheduled_call(job: OldJob) -> Plan:
    task_args = _dict_argument(job).get("task_args")
    if not isinstance(task_args, dict):
        raise NotMigrated("its dict has no task_args (the add_job body)")
    body = {key: value for key, value in task_args.items() if key not in DELAY_FIELDS}
    run_at = job.run_at or dt.datetime.now(dt.UTC)

    def create(rt: Runtime) -> str:
        # The door schedules a call ceil(now + delay); a whole number of seconds from the next whole second
        # lands on the old run time (a second later if the clock ticks over in between).
        delay = max(0, int(run_at.timestamp()) - math.ceil(time.time()))
        schedule = scheduler.service.add_schedule(rt, OPERATOR, {**body, "sch_minutes": delay / 60})
        return f"schedule {schedule.id} ({schedule.description})"

    when = run_at.isoformat(timespec="seconds")
    return Plan(f"CKAN call {str(body.get('action'))[:80]!r} due {when}", body, create)


PLANNERS: dict[str, Callable[[OldJob], Plan]] = {
    "importapi.tasks.create_preview.create_preview_task": _plan_import,
    "analyticsapi.tasks.send_event.send_event_task": _plan_analytics,
    "eventapi.tasks.detect_changes.detect_changes": _plan_change_events,
    "filestructurecheckapi.tasks.file_structure_check.fs_check_task": _plan_file_structure_check,
    "schedulerapi.tasks.make_api_call.schedule_api_task": _plan_scheduled_call,
}
"""The old service's job functions (CONTRACTS.md §5) and what each becomes here."""


def plan(job: OldJob, credentials: set[str]) -> Plan:
    """The hdxrq job an old one becomes; :class:`NotMigrated` when it cannot be carried over."""
    planner = PLANNERS.get(job.func_name)
    if planner is None:
        raise NotMigrated("the old service has no such job function (CONTRACTS.md §5)")
    if job.run_at is not None and planner is not _plan_scheduled_call:
        raise NotMigrated("it was scheduled for later, and hdxrq schedules only CKAN calls")
    result = planner(job)
    carried = json.dumps(result.payload, default=str)
    if any(secret in carried for secret in credentials):
        raise NotMigrated("what it would carry over contains a credential of the old service or of hdxrq")
    return result


def credentials_in(value: Any) -> Iterator[str]:
    """Every string held under a credential key (:data:`CREDENTIAL_KEYS`) anywhere in ``value``."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and CREDENTIAL_KEYS.search(key) and isinstance(inner, str) and inner:
                    yield inner
                pending.append(inner)
        elif isinstance(item, list | tuple):
            pending.extend(item)


# --- running it ---


def migrate(rt: Runtime, *, dry_run: bool) -> Report:
    """Migrate (or, with ``dry_run``, only plan) every job the old service left; what happened to each.

    Two passes over the old jobs, so that a backlog of big change events is never all in memory: the
    first gathers the credentials the old service put in its dicts, the second migrates.
    """
    report = Report(_refused_earlier(rt.redis))
    credentials = set(rt.settings.secret_values())
    for job in find_old_jobs(rt.redis, CONTRACT_QUEUES):
        if isinstance(job, OldJob):
            credentials.update(credentials_in([job.args, job.kwargs]))
    for job in find_old_jobs(rt.redis, CONTRACT_QUEUES):
        report.outcomes.append(_one(rt, job, credentials, dry_run))
    return report


def _one(rt: Runtime, job: OldJob | Unreadable, credentials: set[str], dry_run: bool) -> Outcome:
    outcome = Outcome(job.id, job.queue, job.func_name if isinstance(job, OldJob) else "?", "", "")
    earlier = rt.redis.hget(LEDGER_KEY, job.id)
    if earlier is not None:  # listed again, or a run stopped between creating its job and the ledger's "done"
        entry = json.loads(earlier)
        return _refuse(rt.redis, job, outcome, f"an earlier run {_was(entry)}; left alone", dry_run)
    if isinstance(job, Unreadable):
        return _refuse(rt.redis, job, outcome, job.reason, dry_run)
    try:
        migration = plan(job, credentials)
    except NotMigrated as error:
        return _refuse(rt.redis, job, outcome, str(error), dry_run)
    if dry_run:
        outcome.state, outcome.detail = "would migrate", migration.description
        return outcome
    return _create(rt, job, migration, outcome)


def _was(entry: dict[str, Any]) -> str:
    if entry.get("state") == DONE:
        return f"migrated it as {entry.get('as')}"
    return f"stopped while creating {entry.get('what')} (check whether it exists)"


def _create(rt: Runtime, job: OldJob, migration: Plan, outcome: Outcome) -> Outcome:
    redis = rt.redis
    entry = {"queue": job.queue, "function": job.func_name, "what": migration.description}
    redis.hset(LEDGER_KEY, job.id, json.dumps({**entry, "state": PENDING}))
    try:
        created = migration.create(rt)
    except (NotMigrated, HdxError) as error:
        redis.hdel(LEDGER_KEY, job.id)  # nothing was created
        reason = error.message if isinstance(error, HdxError) else str(error)
        return _refuse(redis, job, outcome, reason, dry_run=False)
    done = {**entry, "state": DONE, "as": created, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    with redis.pipeline(transaction=True) as pipe:
        pipe.hset(LEDGER_KEY, job.id, json.dumps(done))
        _unlist(pipe, job)
        pipe.delete(JOB_KEY.format(job.id))  # its data holds the old service's settings and token
        pipe.execute()
    outcome.state, outcome.detail = "migrated", created
    return outcome


def _refuse(redis: Redis, job: OldJob | Unreadable, outcome: Outcome, reason: str, dry_run: bool) -> Outcome:
    outcome.state, outcome.detail = "not migrated", reason
    if not dry_run:
        record = {"queue": job.queue, "was_in": source_key(job), "function": outcome.function, "reason": reason}
        with redis.pipeline(transaction=True) as pipe:
            pipe.hset(REFUSED_KEY, job.id, json.dumps(record))
            _unlist(pipe, job)  # no worker picks it up; its record rq:job:<id> stays as it was
            pipe.execute()
    return outcome


def _unlist(redis: Any, job: OldJob | Unreadable) -> None:
    key = source_key(job)
    if job.source is Source.QUEUED:
        redis.lrem(key, 0, job.id)
    else:
        redis.zrem(key, job.id)


def _refused_earlier(redis: Redis) -> list[Outcome]:
    """Jobs an earlier run could not migrate (still in :data:`REFUSED_KEY`), to report them again."""
    outcomes = []
    for job_id, raw in sorted(redis.hgetall(REFUSED_KEY).items()):
        record = json.loads(raw)
        outcomes.append(
            Outcome(job_id.decode(), record["queue"], record["function"], "refused earlier", record["reason"])
        )
    return outcomes


def old_service_running(redis: Redis) -> str | None:
    """What shows that the old service still runs (rq-scheduler's lock, a live rq 1.x worker), or ``None``."""
    if redis.exists(OLD_SCHEDULER_LOCK):
        return "rq-scheduler holds rq:scheduler_lock"
    for key in redis.smembers("rq:workers"):
        version = redis.hget(key, "version")
        if version is not None and version.startswith(b"1."):
            return f"an rq {version.decode()} worker is registered ({key.decode()})"
    return None


@click.command("migrate-old-jobs")
@click.option("--dry-run", is_flag=True, help="Read and plan only: change nothing.")
@click.pass_obj
def migrate_old_jobs(runtime: Runtime, dry_run: bool) -> None:
    """Re-create the old HDX Job Processor's waiting and scheduled jobs as hdxrq jobs (docs/OPERATIONS.md)."""
    running = old_service_running(runtime.redis)
    if running and not dry_run:
        raise click.ClickException(f"stop the old service first: {running}")
    report = migrate(runtime, dry_run=dry_run)
    for outcome in report.outcomes:
        click.echo(outcome.line())
    states = ("would migrate", "migrated", "not migrated", "refused earlier")
    summary = ", ".join(f"{report.count(state)} {state}" for state in states if report.count(state))
    click.echo(f"{'dry run: ' if dry_run else ''}{summary or 'no job of the old service found'}")
    if running:
        click.echo(f"warning: the old service still runs ({running})", err=True)
    if report.not_migrated:
        sys.exit(1)
