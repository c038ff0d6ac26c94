"""Scheduled CKAN calls: add_job, list_jobs; jobs on ``default_scheduler_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service the endpoints, ``schedule`` commands, the call job and the repair workers start with."""
    from . import api, cli, tasks

    registry.blueprint(api.bp)
    registry.command(cli.schedule)
    registry.job(tasks.run_scheduled_call)
    registry.on_worker_start(tasks.repair_schedules)
