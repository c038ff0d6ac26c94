"""``./hdxrq.py worker-alive``: whether this host runs a live worker, for container health checks."""

from __future__ import annotations

import socket
import sys

import click
from redis.exceptions import RedisError
from rq import Worker

from .cli import cli
from .connections import SERIALIZER
from .runtime import Runtime


def local_worker_names(runtime: Runtime, hostname: str | None = None) -> list[str]:
    """Names of the workers registered in Redis from ``hostname`` (this host by default).

    A worker's registration lives as long as its heartbeats keep it (``HDX_REDIS_WORKER_TTL``), so a
    worker that died or hangs drops out of this list.
    """
    host = hostname or socket.gethostname()
    workers = Worker.all(connection=runtime.redis, serializer=SERIALIZER)
    return sorted(worker.name for worker in workers if worker.hostname == host)


@cli.command("worker-alive")
@click.pass_obj
def worker_alive(runtime: Runtime) -> None:
    """Exit 0 when a worker of this host is registered in Redis, 1 otherwise (or when Redis is down)."""
    try:
        names = local_worker_names(runtime)
    except RedisError as error:
        click.echo(f"hdxrq: Redis unavailable: {type(error).__name__}", err=True)
        sys.exit(1)
    if not names:
        click.echo(f"hdxrq: no worker of {socket.gethostname()} is registered", err=True)
        sys.exit(1)
    click.echo(" ".join(names))
