"""Change events and file-structure checks; jobs on ``event_q`` and ``fs_check_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service this slice's endpoints, ``events`` commands and the renderer a worker builds once."""
    from . import api, cli, display

    registry.blueprint(api.bp, api.init_app)
    registry.command(cli.events)
    registry.on_worker_start(display.prepare_renderer)
