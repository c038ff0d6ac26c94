"""What the slices give a process, collected once at start-up.

``core`` knows no slice. The composition package (``app``) makes one :class:`Registry`, hands it to each
slice's ``register(registry)`` and installs it; ``core`` reads it back from :func:`current`: the worker
its start-up hooks, job time limits and the job functions it may run, the app factory its blueprints,
the command line its commands. A process where nothing was installed gets an empty registry, and its
workers run nothing.

The job functions are a table from the exact dotted name RQ stores in a job (``module.function``) to the
function itself. A worker looks a job's name up there and nowhere else: no name is imported or resolved,
so a job written into Redis by someone else can only run what a slice registered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import HdxError

if TYPE_CHECKING:
    import click
    from flask import Blueprint, Flask
    from rq.job import Job

    from .runtime import Runtime
    from .settings import Settings

WorkerHook = Callable[["Runtime"], None]
"""Run once when a worker starts, with the worker's runtime (sweeps, repairs, first drains)."""
AppSetup = Callable[["Flask"], None]
"""Run once per app after its blueprint is registered (checks, metric sources, middleware)."""
TimeoutPolicy = Callable[["Job", "Settings"], "int | None"]
"""A job's time limit in seconds, or None to keep the one it was queued with."""


class ForbiddenJobFunction(HdxError):
    """A job names a function that is not registered (or asks for a callback): it is refused, never run."""

    error_type = "forbidden-job-function"
    http_status = 400
    user_message = "This job's function is not one the service runs"


class Registry:
    """Endpoints, commands, job functions and worker duties the slices registered."""

    def __init__(self) -> None:
        self.blueprints: list[tuple[Blueprint, AppSetup | None]] = []
        self.commands: list[click.Command] = []
        self.worker_start_hooks: list[WorkerHook] = []
        self.timeout_policies: list[TimeoutPolicy] = []
        self._jobs: dict[str, Callable[..., Any]] = {}

    def blueprint(self, blueprint: Blueprint, setup: AppSetup | None = None) -> None:
        """Serve ``blueprint`` in every app; ``setup(app)`` runs after it is registered."""
        self.blueprints.append((blueprint, setup))

    def command(self, command: click.Command) -> None:
        """Add a command (or group) to ``./hdxrq.py``."""
        self.commands.append(command)

    def on_worker_start(self, hook: WorkerHook) -> None:
        """Run ``hook(runtime)`` when a worker starts."""
        self.worker_start_hooks.append(hook)

    def job_timeout(self, policy: TimeoutPolicy) -> None:
        """Let ``policy`` set the time limit of jobs before a worker runs them."""
        self.timeout_policies.append(policy)

    def job(self, *functions: Callable[..., Any]) -> None:
        """Let workers run ``functions``, each under the dotted name RQ gives it (``module.qualname``)."""
        for function in functions:
            self._jobs[f"{function.__module__}.{function.__qualname__}"] = function

    def job_names(self) -> frozenset[str]:
        """The names of every registered job function."""
        return frozenset(self._jobs)

    def job_function(self, name: object) -> Callable[..., Any]:
        """The function registered under exactly ``name``; :class:`ForbiddenJobFunction` for anything else."""
        function = self._jobs.get(name) if isinstance(name, str) else None
        if function is None:
            shown = repr(name)[:200]
            raise ForbiddenJobFunction(f"Refused to run {shown}: it is not a registered job function")
        return function

    def timeout_for(self, job: Job, settings: Settings) -> int | None:
        """The first time limit a policy gives ``job``, or None."""
        for policy in self.timeout_policies:
            limit = policy(job, settings)
            if limit:
                return limit
        return None


_lock = threading.Lock()
_installed: Registry | None = None


def install(registry: Registry) -> Registry:
    """Make ``registry`` the one :func:`current` returns in this process (and processes forked from it)."""
    global _installed
    with _lock:
        _installed = registry
    return registry


def current() -> Registry:
    """The installed registry, or an empty one."""
    with _lock:
        return _installed if _installed is not None else Registry()
