"""Change events and file-structure checks; jobs on ``event_q`` and ``fs_check_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service the endpoints, ``events`` commands, job functions and the renderer workers build."""
    from . import api, cli, display, tasks

    registry.blueprint(api.bp, api.init_app)
    registry.command(cli.events)
    registry.job(tasks.publish_change_events, tasks.check_file_structure, tasks.send_fs_check_result)
    registry.callback(tasks.check_gave_up)
    registry.on_worker_start(display.prepare_renderer)
