"""The full settings type: ``core``'s sections and one per slice (:mod:`core.settings` explains the shape)."""

from __future__ import annotations

from analyticsapi.settings import AnalyticsSettings
from core.settings import CoreSettings
from eventsapi.settings import EventsSettings
from importapi.settings import ImportSettings
from processes.settings import ProcessesSettings
from scheduler.settings import SchedulerSettings
from tiles.settings import TilesSettings


class Settings(CoreSettings):
    """Effective configuration of one API or worker process; ``./hdxrq.py config`` shows it by section."""

    importapi: ImportSettings
    analyticsapi: AnalyticsSettings
    eventsapi: EventsSettings
    scheduler: SchedulerSettings
    tiles: TilesSettings
    processes: ProcessesSettings
