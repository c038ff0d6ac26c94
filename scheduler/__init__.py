"""Scheduled CKAN calls: add_job, list_jobs; jobs on ``default_scheduler_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service this slice's endpoints, ``schedule`` commands and the repair a worker starts with."""
    from . import api, cli, tasks

    registry.blueprint(api.bp)
    registry.command(cli.schedule)
    registry.on_worker_start(tasks.repair_schedules)
