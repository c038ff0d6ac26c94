"""What the slices give a process, collected once at start-up.

``core`` knows no slice. The composition package (``app``) makes one :class:`Registry`, hands it to each
slice's ``register(registry)`` and installs it; ``core`` reads it back from :func:`current`: the worker
its start-up hooks and job time limits, the app factory its blueprints, the command line its commands.
A process where nothing was installed gets an empty registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

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


class Registry:
    """Endpoints, commands and worker duties the slices registered."""

    def __init__(self) -> None:
        self.blueprints: list[tuple[Blueprint, AppSetup | None]] = []
        self.commands: list[click.Command] = []
        self.worker_start_hooks: list[WorkerHook] = []
        self.timeout_policies: list[TimeoutPolicy] = []

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
