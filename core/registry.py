"""What the slices give a process, collected once at start-up.

``core`` knows no slice. The composition package (``app``) makes one :class:`Registry`, hands it to each
slice's ``register(registry)`` and installs it; ``core`` reads it back from :func:`current`: the worker
its start-up hooks, job time limits and the job functions it may run, the app factory its blueprints,
the command line its commands. A process where nothing was installed gets an empty registry, and its
workers run nothing.

The job functions are a table from the exact dotted name RQ stores in a job (``module.function``) to the
function itself, and the job callbacks (rq's ``on_failure``...) another. A worker looks a job's names up
there and nowhere else: no name is imported or resolved, so a job written into Redis by someone else can
only run what a slice registered, each function in its own role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import HdxError

if TYPE_CHECKING:
    import click
    from flask import Blueprint, Flask
    from rq.job import Job

    from .runtime import Runtime
    from .settings import CoreSettings

WorkerHook = Callable[["Runtime"], None]
"""Run once when a worker starts, with the worker's runtime (sweeps, repairs, first drains)."""
AppSetup = Callable[["Flask"], None]
"""Run once per app after its blueprint is registered (checks, metric sources, middleware)."""
TimeoutPolicy = Callable[["Job", "CoreSettings"], "int | None"]
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
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._listeners: dict[str, list[Callable[..., None]]] = {}

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
            self._jobs[_dotted_name(function)] = function

    def callback(self, *functions: Callable[..., Any]) -> None:
        """Let workers call ``functions`` as job callbacks (``on_success``, ``on_failure``, ``on_stopped``)."""
        for function in functions:
            self._callbacks[_dotted_name(function)] = function

    def job_alias(self, name: str, function: Callable[..., Any]) -> None:
        """Also run ``function`` for jobs queued under ``name`` (a name it had in an earlier version)."""
        self._jobs[name] = function

    def job_names(self) -> frozenset[str]:
        """The names of every registered job function."""
        return frozenset(self._jobs)

    def job_function(self, name: object) -> Callable[..., Any]:
        """The function registered under exactly ``name``; :class:`ForbiddenJobFunction` for anything else."""
        return _lookup(self._jobs, name, "job function")

    def callback_names(self) -> frozenset[str]:
        """The names of every registered job callback."""
        return frozenset(self._callbacks)

    def callback_function(self, name: object) -> Callable[..., Any]:
        """The callback registered under exactly ``name``; :class:`ForbiddenJobFunction` for anything else."""
        return _lookup(self._callbacks, name, "job callback")

    def listen(self, event: str, listener: Callable[..., None]) -> None:
        """Call ``listener`` whenever a slice notifies ``event`` (the slice's door names its events)."""
        self._listeners.setdefault(event, []).append(listener)

    def notify(self, event: str, *args: Any) -> None:
        """Call the listeners of ``event``, in order; an error propagates to the slice that notified."""
        for listener in self._listeners.get(event, ()):
            listener(*args)

    def timeout_for(self, job: Job, settings: CoreSettings) -> int | None:
        """The first time limit a policy gives ``job``, or None."""
        for policy in self.timeout_policies:
            limit = policy(job, settings)
            if limit:
                return limit
        return None


def _dotted_name(function: Callable[..., Any]) -> str:
    """The name RQ stores for a function: its module and qualified name."""
    return f"{function.__module__}.{function.__qualname__}"


def _lookup(table: dict[str, Callable[..., Any]], name: object, role: str) -> Callable[..., Any]:
    function = table.get(name) if isinstance(name, str) else None
    if function is None:
        raise ForbiddenJobFunction(f"Refused to run {repr(name)[:200]}: it is not a registered {role}")
    return function


_installed: Registry | None = None


def install(registry: Registry) -> Registry:
    """Make ``registry`` the one :func:`current` returns in this process (and processes forked from it)."""
    global _installed
    _installed = registry  # one reference assignment: atomic, no lock needed
    return registry


def current() -> Registry:
    """The installed registry, or an empty one."""
    installed = _installed
    return installed if installed is not None else Registry()
