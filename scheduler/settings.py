"""The scheduler slice's settings section (docs/scheduler.md)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from core.settings import IntList, Section, StrList, env


class SchedulerSettings(Section):
    """Scheduled CKAN calls: which actions, retries of a refused call, how long finished ones are listed."""

    allowed_actions: StrList = Field((), validation_alias=env("HDXRQ_SCHEDULER_ALLOWED_ACTIONS"))
    retry_intervals: IntList = Field((30, 120, 600), validation_alias=env("HDXRQ_SCHEDULER_RETRY_INTERVALS"))
    keep_done_days: float = Field(7.0, validation_alias=env("HDXRQ_SCHEDULER_KEEP_DONE_DAYS"), gt=0)

    @field_validator("allowed_actions")
    @classmethod
    def _action_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [item for item in value if not re.fullmatch(r"[a-z0-9_]+", item)]
        if bad:
            raise ValueError(f"not CKAN action names: {', '.join(bad)}")
        return value

    @field_validator("retry_intervals")
    @classmethod
    def _retry_intervals(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(seconds < 0 for seconds in value):
            raise ValueError("retry intervals are seconds >= 0")
        return value
