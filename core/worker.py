"""The worker class every ``./hdxrq.py worker`` runs.

It is RQ's forking worker (a crashing job cannot take the worker down) plus the project's own duties:

* jobs of :data:`IN_PROCESS_QUEUES` run in the worker process itself, as RQ's ``SimpleWorker`` runs
  every job: they are short, frequent and pure Python, and a fork cost more than their work;
* jobs run only functions of the job registry, looked up by exact name (:class:`core.jobs.HdxJob`);
* the process runtime is built from the settings, and the start-up hooks the slices registered
  (:mod:`core.registry`) run once (for example, sweeping temporary directories left by a killed worker);
* a job whose work horse was killed (out of memory, SIGKILL) gets its rq failure callback, as a job that
  raised or was abandoned by a dead worker does, so its slice can tell CKAN when it was the last try;
* every ended job is counted, with its duration and error code, in the cluster metrics (core.metrics);
* every maintenance run (each :data:`MAINTENANCE_INTERVAL_SEC`, even when idle) also puts back jobs that a
  worker took from a queue but died before starting, when Redis went away (core.orphans);
* with ``--with-scheduler``, rq's scheduler runs on standby in every worker and takes over from a dead
  one within seconds (core.rqscheduler);
* a stop request (SIGTERM, Ctrl-C) lets the current job finish for ``HDXRQ_SHUTDOWN_GRACE_SEC``; past
  that the job's process group (the job and its children, such as ogr2ogr) is terminated and the job is
  put back at the front of its queue for another worker, so nothing is lost either way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from rq import Queue, Worker
from rq.callbacks import execute_failure_callback
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT, DEFAULT_WORKER_TTL
from rq.exceptions import StopRequested
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import import_attribute
from rq.worker import WorkerStatus

from . import orphans, procs, registry, runtime
from .errors import HdxError
from .jobs import HdxJob
from .logging import JobLogHandler, mask_secrets
from .metrics import record_job
from .queues import QueueName
from .rqscheduler import StandbyScheduler

log = logging.getLogger(__name__)

IN_PROCESS_QUEUES = frozenset({QueueName.EVENT})
"""Queues whose jobs run without a work horse. A change-event job does 11-20 ms of work; forking a work
horse for it cost 35-45 ms more (of CPU, on the machine the API shares), a third of the worker's
throughput. The job is safe to run twice, so a worker killed in the middle of one loses nothing: RQ puts
the abandoned job back (see :mod:`core.orphans`). Imports, deliveries and fs checks keep their horse:
they are long, call outside programs or services, and are worth isolating. A stop request lets an
in-process job finish (it is bounded by its own timeout, enforced with SIGALRM as in a work horse)."""

KILL_AFTER_TERM_SEC = 5.0
MAINTENANCE_INTERVAL_SEC = 120
"""rq's registry cleaning and the orphan sweep; rq's default (10 minutes) would leave an orphaned job
waiting up to twenty."""


class HdxWorker(Worker):
    """RQ's forking worker with the project's runtime, start-up hooks, metrics and graceful stop."""

    job_class = HdxJob

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["job_class"] = _registry_bound(kwargs.get("job_class"))
        super().__init__(*args, **kwargs)
        self._error_type = "unknown"
        self._interrupted_job_id: str | None = None
        self._grace_timer: threading.Timer | None = None

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        rt = runtime.current()
        logging.getLogger().addHandler(JobLogHandler(int(rt.settings.jobs.retention_hours * 3600)))
        for hook in registry.current().worker_start_hooks:
            try:
                hook(rt)
            except Exception:
                log.exception("worker start-up hook %s.%s failed", hook.__module__, hook.__qualname__)
        super().bootstrap(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker wakes from its blocking pop at least once per maintenance interval to run it.
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """rq's, with a :class:`StandbyScheduler` whose process starts whether or not it got the locks."""
        self.scheduler = StandbyScheduler(
            self.queues,
            connection=self.connection,
            worker_connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not burst:
            self.scheduler.start()
        elif self.scheduler.acquired_locks:  # a burst worker moves what is due once, as rq's does
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            finally:
                self.scheduler.release_locks()  # type: ignore[no-untyped-call]
                self.scheduler.register_death()

    def run_maintenance_tasks(self) -> None:
        process = self.scheduler._process if self.scheduler else None
        if process is not None and not process.is_alive():  # rq would restart it only with the locks free
            log.warning("the scheduler process ended (exit code %s): starting it again", process.exitcode)
            self.scheduler.start()
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        try:
            orphans.sweep(self.connection)
        except StopRequested:  # raised by rq's signal handler wherever the worker is: let rq stop
            raise
        except Exception:  # the next maintenance run tries again
            log.exception("the orphaned-job sweep failed")

    def execute_job(self, job: Job, queue: Queue) -> None:
        limit = registry.current().timeout_for(job, runtime.current().settings)
        if limit:
            job.timeout = limit  # the work horse is forked below and inherits it
        if queue.name not in IN_PROCESS_QUEUES:
            super().execute_job(job, queue)
            return
        # RQ's SimpleWorker.execute_job: the job's timeout is enforced by the same SIGALRM death penalty
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.origin not in IN_PROCESS_QUEUES:
            return super().get_heartbeat_ttl(job, working_time)
        # No horse to watch, so no heartbeat while the job runs: the worker's key must outlive the job.
        return DEFAULT_WORKER_TTL if job.timeout == -1 else int(job.timeout or DEFAULT_WORKER_TTL) + 60

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]  # rq's
        if job.id == self._interrupted_job_id:
            return  # stopped for a shutdown: requeued, not failed
        killed = WorkHorseKilled(f"the job's process ended unexpectedly (wait status {ret_val})")
        try:
            execute_failure_callback(job, self.death_penalty_class, WorkHorseKilled, killed, None)
        except Exception:
            log.exception("failure callback of job %s raised", job.id)

    # --- metrics ---

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, JobTimeoutException):
            terminate_children(KILL_AFTER_TERM_SEC)
        self._error_type = error_type_of(error)
        _remember_failure(job, error)
        super().handle_exception(job, *exc_info)

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        super().handle_job_success(job, queue, *args, **kwargs)
        self._record(job, "success", "None")

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        will_retry = job.should_retry and self._stopped_job_id != job.id
        if isinstance(kwargs.get("exc_string"), str):  # the traceback rq keeps on the job, masked as logs are
            kwargs["exc_string"] = mask_secrets(kwargs["exc_string"])
        super().handle_job_failure(job, queue, *args, **kwargs)
        if job.id == self._interrupted_job_id:
            self._requeue_interrupted(job, queue)
            self._record(job, "interrupted", "shutdown")
            return
        self._record(job, "retried" if will_retry else "failure", self._error_type)
        self._error_type = "unknown"

    def _record(self, job: Job, outcome: str, error_type: str) -> None:
        seconds = None
        if job.started_at and job.ended_at:
            seconds = (job.ended_at - job.started_at).total_seconds()
        try:
            record_job(
                self.connection,
                queue=job.origin,
                function=job.func_name or "unknown",
                outcome=outcome,
                error_type=error_type,
                seconds=seconds,
            )
        except Exception:  # metrics never fail a job
            log.debug("could not record job metrics", exc_info=True)

    # --- graceful stop ---

    def request_stop(self, signum: int, frame: Any) -> None:
        busy_with = self.get_current_job_id()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        if busy_with and self.horse_pid and self._grace_timer is None:
            grace = runtime.current().settings.workers.shutdown_grace_sec
            log.warning("stop requested: job %s gets %.0fs to finish", busy_with, grace)
            self._grace_timer = threading.Timer(grace, self._interrupt_job, args=(busy_with, self.horse_pid))
            self._grace_timer.daemon = True
            self._grace_timer.start()

    def _interrupt_job(self, job_id: str, horse_pid: int) -> None:
        """Past the grace period: terminate the job's process group (SIGTERM, then SIGKILL)."""
        if self.horse_pid != horse_pid:
            return  # the job finished in time
        log.warning("job %s did not finish within the grace period: stopping it and requeuing", job_id)
        self._interrupted_job_id = job_id
        self._signal_horse_group(horse_pid, signal.SIGTERM)
        finished = threading.Event()
        finished.wait(KILL_AFTER_TERM_SEC)
        if self.horse_pid == horse_pid:
            self._signal_horse_group(horse_pid, signal.SIGKILL)

    @staticmethod
    def _signal_horse_group(horse_pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(horse_pid, sig)  # the horse leads its own process group (rq calls setpgrp)
        except ProcessLookupError:
            pass

    def _requeue_interrupted(self, job: Job, queue: Queue) -> None:
        failed = FailedJobRegistry(queue.name, connection=self.connection, serializer=self.serializer)
        if job.id in failed:
            failed.requeue(job.id, at_front=True)
            log.warning("job %s requeued at the front of %s", job.id, queue.name)
        self._interrupted_job_id = None


def _registry_bound(job_class: type[Job] | str | None) -> type[Job]:
    """:class:`HdxJob` (or a subclass): a job class that would resolve any name is never used."""
    chosen = import_attribute(job_class) if isinstance(job_class, str) else job_class
    if isinstance(chosen, type) and issubclass(chosen, HdxJob):
        return chosen
    if chosen is not None:
        log.warning("job class %r ignored: workers use %s, which runs registered functions only", job_class, HdxJob)
    return HdxJob


class WorkHorseKilled(Exception):
    """What a job's failure callback receives when its work horse died without raising (OOM, SIGKILL)."""


def error_type_of(error: BaseException | None) -> str:
    """The stable error code of an exception a job raised."""
    if isinstance(error, JobTimeoutException):
        return "timeout"
    code = getattr(error, "error_type", None)  # ours are strings; redis-py's exceptions carry an enum there
    return code if isinstance(code, str) and code else type(error).__name__


def _remember_failure(job: Job, error: BaseException | None) -> None:
    """Keep the failure's code and a message safe to show on the job record (never a traceback)."""
    message = error.message if isinstance(error, HdxError) else type(error).__name__
    if isinstance(error, JobTimeoutException):
        message = f"The job ran longer than its {job.timeout}s limit and was stopped"
    job.meta.update(error_type=error_type_of(error), error_message=message)
    try:
        job.save_meta()
    except Exception:
        log.debug("could not save the failure on the job", exc_info=True)


def terminate_children(grace: float) -> None:
    """SIGTERM every child process of this one (ogr2ogr and the like), then SIGKILL what is left."""
    children = procs.children(os.getpid())
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if not _reaped(pid)]
        if children:
            time.sleep(0.05)
    for pid in children:
        _signal(pid, signal.SIGKILL)
        _reaped(pid, block=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reaped(pid: int, block: bool = False) -> bool:
    try:
        done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return True  # not ours to wait for, or already reaped by its Popen
    return done == pid
