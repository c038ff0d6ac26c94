"""OGC API – Processes endpoints: landing page, conformance, processes, execution, jobs.

Execution is asynchronous unless the client asks to wait (``Prefer: wait=N``, or OWSLib's
``respond-sync``) and a place to wait is free (:mod:`processes.waits`); a submitted job is in Redis before
the 201 answer leaves. Who may start a process is the slice door's decision: the caller is described
here and passed on. A job's status is open to anyone who knows its id (ids are unguessable); the list of
jobs, their logs and results, and dismissing one need the admin token.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import ValidationError
from rq.job import Job

from core.auth import Caller, check_admin
from core.connections import SERIALIZER, blocking_redis
from core.errors import BadRequest, HdxError, NotFound
from core.jobs import QueueFull
from core.queues import ALL_QUEUES
from core.runtime import Runtime
from core.version import __version__

from . import status, waits
from .catalog import BY_ID, PROCESSES, Process
from .status import JobView, OgcStatus

bp = Blueprint("processes", __name__)

OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
]
DEFAULT_SYNC_WAIT_SEC = 30
MAX_SYNC_WAIT_SEC = 120
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
JOB_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


class NoSuchProcess(NotFound):
    error_type = "no-such-process"
    user_message = "No such process"


class NoSuchJob(NotFound):
    error_type = "no-such-job"
    user_message = "No such job"


class ResultNotReady(NotFound):
    error_type = "result-not-ready"
    user_message = "The job has no results yet"


class InvalidInput(BadRequest):
    error_type = "invalid-parameter-value"
    user_message = "Invalid inputs"


def _runtime() -> Runtime:
    return current_app.extensions["hdx"]  # type: ignore[no-any-return]


def _link(href: str, rel: str, title: str, kind: str = "application/json") -> dict[str, str]:
    return {"href": href, "rel": rel, "type": kind, "title": title}


# --- landing page and conformance ---


@bp.get("/")
def landing_page() -> Response:
    """The API's landing page.

    Links to this API's description and documentation, its conformance classes, the processes and the
    jobs (OGC API - Processes).
    """
    return jsonify(
        title="hdxrq",
        description="Job processor for CKAN: geopreview imports, change events, file-structure checks, "
        "analytics delivery and CKAN calls, as OGC API - Processes.",
        version=__version__,
        links=[
            _link(url_for(".landing_page", _external=True), "self", "This document"),
            _link(
                url_for("openapi.openapi_json", _external=True),
                "service-desc",
                "The API definition",
                "application/vnd.oai.openapi+json;version=3.0",
            ),
            _link(url_for("openapi.docs", _external=True), "service-doc", "The API documentation", "text/html"),
            _link(
                url_for(".conformance", _external=True),
                "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "Conformance classes",
            ),  # fmt: skip
            _link(url_for(".list_processes", _external=True), f"{OGC_REL}processes", "Processes"),
            _link(url_for(".list_jobs", _external=True), f"{OGC_REL}job-list", "Jobs"),
        ],
    )


@bp.get("/conformance")
def conformance() -> Response:
    """The conformance classes this API implements."""
    return jsonify(conformsTo=CONFORMANCE)


# --- processes ---


def _process_summary(process: Process) -> dict[str, Any]:
    return {
        "id": process.id,
        "title": process.title,
        "description": process.description,
        "version": process.version,
        "keywords": list(process.keywords),
        "jobControlOptions": ["async-execute", "sync-execute", "dismiss"],
        "outputTransmission": ["value"],
        "links": [
            _link(url_for(".describe_process", process_id=process.id, _external=True), "self", process.title),
            _link(url_for(".execute", process_id=process.id, _external=True), f"{OGC_REL}execute", "Execute"),
        ],
    }


@bp.get("/processes")
def list_processes() -> Response:
    """List the processes.

    The service's work (imports, change detection, analytics, checks, CKAN calls) as OGC API - Processes
    processes, summarised.
    """
    return jsonify(
        processes=[_process_summary(process) for process in PROCESSES],
        links=[_link(url_for(".list_processes", _external=True), "self", "Processes")],
    )


@bp.get("/processes/<process_id>")
def describe_process(process_id: str) -> Response:
    """Describe a process.

    Its inputs and outputs, as JSON Schema.
    """
    process = _process(process_id)
    return jsonify({**_process_summary(process), "inputs": process.input_descriptions(), "outputs": process.outputs})


def _process(process_id: str) -> Process:
    process = BY_ID.get(process_id)
    if process is None:
        raise NoSuchProcess(f"No process named {process_id[:100]!r}")
    return process


@bp.post("/processes/<process_id>/execution")
def execute(process_id: str) -> tuple[Response, int, dict[str, str]]:
    """Run a process.

    Starts a job with the body's `inputs`. Answers 201 with the job's status and a `Location` header; with
    `Prefer: wait=<seconds>` the answer waits up to that long and gives the results (200) when the job
    ends in time. The same rules as the process's CKAN endpoint apply (access, validation, queue limits).
    """
    process = _process(process_id)
    inputs = _parse_inputs(process, request.get_json(silent=True))
    rt = _runtime()
    job_id = process.submit(rt, Caller.from_request(), inputs)
    wait = _requested_wait(request.headers.get("Prefer", ""))
    job_view = status.fetch(rt.redis, job_id)
    if job_view is None:
        raise NoSuchJob(f"job {job_id} vanished")
    if wait:
        with waits.place(rt.redis, rt.settings, wait) as granted:
            finished = _wait_for(job_view.job, wait) if granted else None
        if finished is not None and finished.status is OgcStatus.SUCCESSFUL:
            return jsonify(_results(finished)), 200, {"Preference-Applied": f"wait={wait}"}
        if finished is not None:
            job_view = finished
    location = url_for(".job_status", job_id=job_id, _external=True)
    return jsonify(job_view.status_info(_job_links(job_view))), 201, {"Location": location}


def _parse_inputs(process: Process, body: Any) -> Any:
    if not isinstance(body, dict):
        raise InvalidInput('The body must be a JSON object: {"inputs": {...}}')
    try:
        return process.inputs.model_validate(body.get("inputs", {}))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'inputs'}: {e['msg']}" for e in error.errors())
        raise InvalidInput(f"Invalid inputs for {process.id}: {problems}"[:1000]) from None


def _requested_wait(prefer: str) -> int:
    """Seconds the client is willing to wait for the results (0: answer at once)."""
    preferences = [item.strip().lower() for item in prefer.split(",")]
    for item in preferences:
        if item.startswith("wait="):
            try:
                return max(0, min(int(item.removeprefix("wait=")), MAX_SYNC_WAIT_SEC))
            except ValueError:
                return 0
    return DEFAULT_SYNC_WAIT_SEC if "respond-sync" in preferences else 0


def _wait_for(job: Job, seconds: int) -> JobView | None:
    """Block on RQ's result stream (no polling) until the job ends or ``seconds`` pass."""
    with blocking_redis(_runtime().settings, seconds) as redis:
        Job.fetch(job.id, connection=redis, serializer=SERIALIZER).latest_result(timeout=seconds)
    return status.fetch(job.connection, job.id)


# --- jobs ---


def _job_links(job_view: JobView) -> list[dict[str, str]]:
    links = [
        _link(url_for(".job_status", job_id=job_view.id, _external=True), "self", "Status"),
        _link(url_for(".job_log", job_id=job_view.id, _external=True), "log", "Log lines written by the job"),
    ]
    if job_view.status is OgcStatus.SUCCESSFUL:
        results = url_for(".job_results", job_id=job_view.id, _external=True)
        links.append(_link(results, f"{OGC_REL}results", "Results"))
    return links


@bp.get("/jobs")
def list_jobs() -> Response:
    """List the jobs.

    Needs the admin token. Running, waiting, failed, finished and dismissed jobs, newest first in each; the
    query parameters `processID`, `status`, `limit` and `offset` narrow the page, and a `next` link
    continues it.
    """
    check_admin()
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, 10**9)
    statuses = request.args.getlist("status")
    unknown = set(statuses) - {s.value for s in OgcStatus}
    if unknown:
        raise InvalidInput(f"Unknown status {sorted(unknown)[0][:50]!r}")
    processes = request.args.getlist("processID")
    queues = {BY_ID[pid].queue for pid in processes if pid in BY_ID} if processes else set(ALL_QUEUES)
    page = status.page_jobs(
        _runtime().redis,
        queues=[name for name in ALL_QUEUES if name in queues],
        processes=processes,
        statuses=statuses,
        offset=offset,
        limit=limit,
    )
    links = [_link(request.url, "self", "This page")]
    if page.next_offset is not None:
        args = {**request.args.to_dict(flat=False), "offset": [str(page.next_offset)], "limit": [str(limit)]}
        links.append(_link(url_for(".list_jobs", _external=True, **args), "next", "Next page"))
    return jsonify(jobs=[v.status_info(_job_links(v)) for v in page.views], links=links)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _job(job_id: str) -> JobView:
    job_view = status.fetch(_runtime().redis, job_id) if JOB_ID.fullmatch(job_id) else None
    if job_view is None:
        raise NoSuchJob(f"No job {job_id[:100]!r}")
    return job_view


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    """A job's status.

    Its status, progress and times, with links to its results and log.
    """
    job_view = _job(job_id)
    return jsonify(job_view.status_info(_job_links(job_view)))


@bp.get("/jobs/<job_id>/results")
def job_results(job_id: str) -> Response:
    """A job's results.

    Needs the admin token. The outputs of a successful job.
    """
    check_admin()
    job_view = _job(job_id)
    if job_view.status is OgcStatus.FAILED:
        raise ResultNotReady(f"The job failed: {job_view.message()}")
    if job_view.status is not OgcStatus.SUCCESSFUL:
        raise ResultNotReady(f"The job is {job_view.status.value}")
    return jsonify(_results(job_view))


def _results(job_view: JobView) -> dict[str, Any]:
    return {"result": job_view.job.return_value()}


@bp.get("/jobs/<job_id>/log")
def job_log(job_id: str) -> Response:
    """A job's log.

    Needs the admin token. The lines the job logged, secrets masked.
    """
    check_admin()
    job_view = _job(job_id)
    return jsonify(jobID=job_view.id, log=status.job_log(_runtime().redis, job_view.id))


@bp.delete("/jobs/<job_id>")
def dismiss_job(job_id: str) -> Response:
    """Dismiss a job.

    Needs the admin token. Cancels the job if it waits, stops it if it runs, forgets it if it ended.
    """
    check_admin()
    job_view = _job(job_id)
    status.dismiss(_runtime().redis, job_view)
    info = job_view.status_info([])
    info.update(status=OgcStatus.DISMISSED.value, message="Dismissed")
    return jsonify(info)


# --- errors in the OGC exception shape ---


@bp.errorhandler(HdxError)
def ogc_exception(error: HdxError) -> tuple[Response, int, dict[str, str]]:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, QueueFull) else {}
    body = {
        "type": OGC_EXCEPTIONS + error.error_type,
        "title": error.user_message,
        "status": error.http_status,
        "detail": error.message,
        "error_type": error.error_type,
    }
    return jsonify(body), error.http_status, headers
