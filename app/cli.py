"""``./hdxrq.py``: every rq subcommand (worker, info, requeue, empty, suspend, ...) plus our own commands.

rq's commands keep all their flags; we only give them the project's defaults (the RQ Redis URL from the
settings, the JSON serializer, our worker class, every queue), which any flag on the command line
overrides, and ``worker`` takes ``--lane`` (:mod:`core.queues`). Settings are read once here and shared
through ``ctx.obj``.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource
from redis.exceptions import RedisError
from rq.cli.cli import main as rq_main

from core import registry
from core.connections import CONNECTION_CLASS_PATH, JOB_CLASS_PATH, SERIALIZER_PATH, WORKER_CLASS_PATH
from core.logging import configure_logging
from core.monitor import local_worker_names
from core.queues import LANES, LANES_BY_NAME, merge_lanes, within
from core.runtime import Runtime, install
from core.settings import CoreSettings, SettingsError
from core.version import __version__
from core.worker import MAINTENANCE_INTERVAL_SEC

from . import cutover, serve
from .settings import Settings
from .slices import compose

cli = click.Group(
    "hdxrq",
    help="hdxrq: the job processor beside CKAN. rq's commands plus the service's own.",
    commands=dict(rq_main.commands),
)
click.version_option(__version__, "--version", prog_name="hdxrq", message="%(prog)s %(version)s")(cli)


def with_lanes(rq_worker: click.Command) -> click.Command:
    """rq's ``worker`` command plus ``--lane NAME`` (repeatable): the lane's queues, in its order, with its
    dequeue strategy, instead of naming queues (``--dequeue-strategy`` on the command line still wins)."""

    def callback(**params: Any) -> Any:
        lanes = params.pop("lane")
        if lanes:
            ctx = click.get_current_context()
            if ctx.get_parameter_source("queues") is ParameterSource.COMMANDLINE:
                raise click.UsageError("name queues or --lane, not both")
            allowed = within(tuple(LANES_BY_NAME[name] for name in lanes), ctx.obj.settings.workers.queues)
            if not allowed:
                raise click.UsageError(f"QUEUES names none of the queues of --lane {', '.join(lanes)}")
            lane = merge_lanes(allowed)
            params["queues"] = tuple(str(name) for name in lane.queues)
            if ctx.get_parameter_source("dequeue_strategy") is not ParameterSource.COMMANDLINE:
                params["dequeue_strategy"] = lane.strategy
        assert rq_worker.callback is not None
        return rq_worker.callback(**params)

    lane_option = click.Option(
        ["--lane"],
        multiple=True,
        type=click.Choice([lane.name for lane in LANES]),
        help="Take this lane's queues (events, analytics, geo; repeat to take several) instead of naming queues.",
    )
    return click.Command(
        rq_worker.name,
        params=[*rq_worker.params, lane_option],
        callback=callback,
        help=rq_worker.help,
        short_help=rq_worker.short_help,
    )


cli.add_command(with_lanes(rq_main.commands["worker"]))


def rq_defaults(settings: CoreSettings) -> dict[str, dict[str, Any]]:
    """``default_map`` for rq's commands: the project's connection, serializer and worker settings."""
    shared = {
        "url": settings.redis.url,
        "connection_class": CONNECTION_CLASS_PATH,  # reads redis+sentinel:// URLs too
        "serializer": SERIALIZER_PATH,
        "job_class": JOB_CLASS_PATH,
    }
    defaults: dict[str, dict[str, Any]] = {name: dict(shared) for name in rq_main.commands}
    defaults["worker"].update(
        worker_class=WORKER_CLASS_PATH,
        queues=list(settings.workers.queues),
        worker_ttl=settings.workers.ttl,
        maintenance_interval=MAINTENANCE_INTERVAL_SEC,
        results_ttl=int(settings.jobs.retention_hours * 3600),
    )
    defaults["worker-pool"].update(worker_class=WORKER_CLASS_PATH, queues=list(settings.workers.queues))
    return defaults


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``./hdxrq.py``."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        click.echo(f"hdxrq: {error}", err=True)
        sys.exit(2)
    configure_logging(settings)
    runtime = install(Runtime(settings))
    _add_commands(registry.install(compose(settings)))
    cli.main(args=args, prog_name="hdxrq.py", default_map=rq_defaults(settings), obj=runtime)


def _add_commands(slices: registry.Registry) -> None:
    """``serve``, ``run``, ``migrate-old-jobs`` and the commands the slices registered."""
    for command in (serve.serve, serve.run, cutover.migrate_old_jobs, *slices.commands):
        cli.add_command(command)


@cli.command("config")
@click.pass_obj
def show_config(runtime: Runtime) -> None:
    """Print the effective settings by section, secrets masked."""
    click.echo(json.dumps(runtime.settings.masked(), indent=2))


@cli.command("worker-alive")
@click.pass_obj
def worker_alive(runtime: Runtime) -> None:
    """Exit 0 when a worker of this host is registered in Redis, 1 otherwise (container health checks)."""
    try:
        names = local_worker_names(runtime)
    except RedisError as error:
        click.echo(f"hdxrq: Redis unavailable: {type(error).__name__}", err=True)
        sys.exit(1)
    if not names:
        click.echo(f"hdxrq: no worker of {socket.gethostname()} is registered", err=True)
        sys.exit(1)
    click.echo(" ".join(names))
