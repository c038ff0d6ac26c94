"""The events slice's settings section (docs/eventsapi.md). The event bus itself is ``core``'s
(:class:`core.settings.EventBusSettings`), the CKAN token of the file-structure check too (``ckan``)."""

from __future__ import annotations

from pydantic import Field

from core.settings import Section, env


class EventsSettings(Section):
    """Change events."""

    enabled: bool = Field(True, validation_alias=env("EVENTS_API_ENABLED"))
