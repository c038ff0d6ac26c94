"""The slices of the service and the registry they fill."""

from __future__ import annotations

import analyticsapi
import eventsapi
import importapi
import processes
import scheduler
import tiles
from core.registry import Registry

SLICES = (importapi, analyticsapi, eventsapi, scheduler, tiles, processes)
"""In the order their blueprints are registered."""


def compose() -> Registry:
    """A registry holding what every slice registers."""
    registry = Registry()
    for package in SLICES:
        package.register(registry)
    return registry
