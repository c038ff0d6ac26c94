"""Vector tiles (``/gis/...``, postile-compatible) and the map preview (``/preview/<layer_id>``).

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service the tile and preview endpoints and the prerender job, and follow imported layers:
    a replaced layer gets its expensive tiles prerendered, a dropped one loses its stored tiles."""
    from importapi import service as imports

    from . import api, prerender, tasks

    registry.blueprint(api.bp, api.init_app)
    registry.job(tasks.prerender_layer)
    imports.on_layer_replaced(registry, tasks.layer_imported)
    imports.on_layer_dropped(registry, prerender.forget_layer)
