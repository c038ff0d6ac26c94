"""Errors of the scheduler slice.

HdxError
├── BadRequest
│   └── InvalidSchedule        invalid-schedule      (add_job refused: bad action, delay, cron...)
└── NotFound
    └── ScheduleNotFound       schedule-not-found    (cancel or show an unknown id)
"""

from __future__ import annotations

from core.errors import BadRequest, NotFound


class InvalidSchedule(BadRequest):
    """An add_job request that cannot be scheduled; the message says why."""

    error_type = "invalid-schedule"
    user_message = "Invalid schedule"


class ScheduleNotFound(NotFound):
    """No scheduled job has this id (never existed, cancelled, or expired after it ran)."""

    error_type = "schedule-not-found"
    user_message = "No such scheduled job"
