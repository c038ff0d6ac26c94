"""The slices of the service and the registry they fill."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import analyticsapi
import eventsapi
import importapi
import processes
import scheduler
import tiles
from core.registry import Registry

if TYPE_CHECKING:
    from core.settings import CoreSettings

SLICES = (importapi, analyticsapi, eventsapi, scheduler, tiles, processes)
"""In the order their blueprints are registered."""


def compose(settings: CoreSettings) -> Registry:
    """A registry holding what every slice registers, and the modules of ``HDXRQ_EXTRA_JOB_MODULES``."""
    registry = Registry()
    for package in SLICES:
        package.register(registry)
    for name in settings.jobs.extra_modules:
        importlib.import_module(name).register(registry)
    return registry
