"""The OGC processes slice's settings section (README, ``HDXRQ_PROCESS_TIMEOUTS``)."""

from __future__ import annotations

from pydantic import Field

from core.settings import Limits, Section, env


class ProcessesSettings(Section):
    """OGC API - Processes."""

    timeouts: Limits = Field({}, validation_alias=env("HDXRQ_PROCESS_TIMEOUTS"))
    """Time limit of a process's jobs, by process id (``*``: every process)."""
