"""Geopreview imports: add-layer, delete-one-layer, delete-layers; jobs on ``geo_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service this slice's endpoints, ``import`` command, job functions and worker start-up sweep."""
    from . import api, cli, ogr, sweep, tasks

    registry.blueprint(api.bp, api.init_app)
    registry.command(cli.import_command)
    registry.job(tasks.import_resource, tasks.send_callback)
    registry.callback(tasks.import_gave_up)
    registry.on_worker_start(sweep.sweep_leftovers)
    registry.on_worker_start(ogr.list_drivers_once)
