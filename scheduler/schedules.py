"""What an add_job request asks for, validated, and when its calls are due (pure: no Redis, no clock).

A schedule is one CKAN action called once after a delay, every N minutes, or on a cron expression
(evaluated in UTC). Times are whole seconds since the epoch ("ticks"): a tick names one due call.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from croniter import croniter

from core import finite

from .errors import InvalidSchedule
from .settings import SchedulerSettings

if TYPE_CHECKING:
    from core.settings import CoreSettings

ACTION_NAME = re.compile(r"[a-z0-9_]+")
"""A CKAN action name: nothing that could change the URL's path or query."""
MAX_ACTION_LENGTH = 100
MAX_PARAMS_BYTES = 64 * 1024
MAX_DELAY = timedelta(days=366)
MAX_INTERVAL_MINUTES = 366 * 24 * 60
DELAY_FIELDS = {"sch_days": "days", "sch_hours": "hours", "sch_minutes": "minutes"}
QUERY_SCALARS = (str, int, float, bool)


class Kind(StrEnum):
    """How a schedule repeats."""

    ONCE = "once"
    INTERVAL = "interval"
    CRON = "cron"


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated request for scheduled CKAN calls."""

    action: str
    method: str
    kind: Kind
    first_tick: int
    api_params: dict[str, Any] = field(default_factory=dict)
    interval_minutes: int | None = None
    cron: str | None = None

    @property
    def description(self) -> str:
        """One line for people: method, action and timing (never parameters or credentials)."""
        return f"{self.method} {self.action} {self.timing_text}"

    @property
    def timing_text(self) -> str:
        if self.kind is Kind.INTERVAL:
            return f"every {self.interval_minutes} minute(s)"
        if self.kind is Kind.CRON:
            return f"on cron '{self.cron}' (UTC)"
        return f"once at {iso(self.first_tick)}"

    def tick_after(self, tick: int, now: int) -> int | None:
        """The tick after ``tick`` that is later than ``now`` (missed ticks are skipped); ``None`` for one-shots."""
        if self.kind is Kind.INTERVAL:
            assert self.interval_minutes is not None
            step = self.interval_minutes * 60
            missed = max(0, (now - tick) // step)
            return tick + (missed + 1) * step
        if self.kind is Kind.CRON:
            assert self.cron is not None
            return next_cron_tick(self.cron, max(tick, now))
        return None


def iso(tick: int | None) -> str | None:
    """A tick as ISO 8601 UTC (``None`` stays ``None``)."""
    return None if tick is None else datetime.fromtimestamp(tick, UTC).isoformat()


def next_cron_tick(expression: str, after: int) -> int:
    """The first time strictly after ``after`` that matches the cron expression, in UTC."""
    start = datetime.fromtimestamp(after, UTC)
    return int(croniter(expression, start).get_next(datetime).timestamp())


def parse_add_job(body: Any, settings: CoreSettings, now: datetime) -> ScheduleSpec:
    """Validate an add_job body (CONTRACTS.md §2.8 plus ``cron``/``interval_minutes``) into a spec."""
    if not isinstance(body, dict):
        raise InvalidSchedule("the body must be a JSON object")
    finite.ensure_finite(body, "the request")  # NaN or Infinity would fail every run, silently
    action = parse_action(body.get("action"), SchedulerSettings.of(settings).allowed_actions)
    method = parse_method(body.get("method"))
    params = parse_params(body.get("api_params"), method, settings.secret_values())
    delay = parse_delay_seconds(body)
    start = math.ceil(now.timestamp() + delay)
    cron, interval = body.get("cron"), body.get("interval_minutes")
    if cron not in (None, "") and interval not in (None, ""):
        raise InvalidSchedule("give either cron or interval_minutes, not both")
    if cron not in (None, ""):
        expression = parse_cron(cron)
        return ScheduleSpec(action, method, Kind.CRON, next_cron_tick(expression, start), params, cron=expression)
    if interval not in (None, ""):
        minutes = parse_interval(interval)
        first = start if delay > 0 else start + minutes * 60
        return ScheduleSpec(action, method, Kind.INTERVAL, first, params, interval_minutes=minutes)
    return ScheduleSpec(action, method, Kind.ONCE, start, params)


def parse_action(value: Any, allowed: tuple[str, ...]) -> str:
    """A CKAN action name, and one the allow-list permits when there is one."""
    if not isinstance(value, str) or not value:
        raise InvalidSchedule("action is required (a CKAN action name such as package_patch)")
    if len(value) > MAX_ACTION_LENGTH or not ACTION_NAME.fullmatch(value):
        raise InvalidSchedule("action must be a CKAN action name: lower-case letters, digits and _ only")
    if allowed and value not in allowed:
        raise InvalidSchedule(f"action {value} is not in HDXRQ_SCHEDULER_ALLOWED_ACTIONS")
    return value


def parse_method(value: Any) -> str:
    """``post`` (the default) or ``get``, any case."""
    if value in (None, ""):
        return "POST"
    if not isinstance(value, str) or value.lower() not in ("post", "get"):
        raise InvalidSchedule("method must be post or get")
    return value.upper()


def parse_params(value: Any, method: str, secrets: list[str]) -> dict[str, Any]:
    """``api_params``: a JSON object; for GET, flat query values; never a credential of this service."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise InvalidSchedule("api_params must be a JSON object")
    encoded = json.dumps(value)
    if len(encoded.encode()) > MAX_PARAMS_BYTES:
        raise InvalidSchedule(f"api_params is larger than {MAX_PARAMS_BYTES // 1024} KB")
    if any(secret in encoded for secret in secrets):
        raise InvalidSchedule("api_params must not contain credentials: the worker adds the CKAN token itself")
    if method == "GET" and not all(_is_query_value(item) for item in value.values()):
        raise InvalidSchedule("for get, api_params values must be strings, numbers, booleans or lists of them")
    return value


def parse_delay_seconds(body: dict[str, Any]) -> float:
    """The one-shot delay (or first-run delay) from ``sch_days``, ``sch_hours`` and ``sch_minutes``."""
    parts = {unit: _non_negative_number(name, body.get(name)) for name, unit in DELAY_FIELDS.items()}
    try:
        delay = timedelta(**parts)
    except OverflowError:
        delay = timedelta.max
    if delay > MAX_DELAY:
        raise InvalidSchedule("the delay is longer than a year")
    return delay.total_seconds()


def parse_cron(value: Any) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    if not isinstance(value, str) or len(value.split()) != 5 or not croniter.is_valid(value):
        raise InvalidSchedule("cron must be a five-field cron expression such as '0 3 * * *'")
    return " ".join(value.split())


def parse_interval(value: Any) -> int:
    """Whole minutes between calls, at least 1."""
    minutes = _non_negative_number("interval_minutes", value)
    if minutes != int(minutes) or not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise InvalidSchedule("interval_minutes must be a whole number of minutes between 1 and 527040")
    return int(minutes)


def _non_negative_number(name: str, value: Any) -> float:
    if value in (None, ""):
        return 0.0
    if isinstance(value, bool):
        raise InvalidSchedule(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidSchedule(f"{name} must be a number") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidSchedule(f"{name} must be zero or more")
    return number


def _is_query_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, QUERY_SCALARS) for item in value)
    return isinstance(value, QUERY_SCALARS)
