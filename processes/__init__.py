"""OGC API – Processes (Part 1: Core, JSON) over the service's queues: processes, jobs, status, results.

Each process goes through the door of the slice that does its work; :func:`register` is for ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service the OGC endpoints and the per-process time limits (``HDXRQ_PROCESS_TIMEOUTS``)."""
    from . import api, catalog

    registry.blueprint(api.bp)
    registry.job_timeout(catalog.job_timeout)
