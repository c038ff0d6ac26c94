"""Notifications hdxrq could not take for now, parked in CKAN's Redis and sent again, oldest first.

A notification is parked when hdxrq did not answer (down, unreachable, slower than the timeouts) or its
gateway said it is unavailable (502, 503, 504): it would have been taken a moment later. Each later save
first sends a few parked ones (:data:`RESEND_PER_SAVE`) before its own; ``ckan hdxrq resend`` sends all of
them (run it from cron, or after an outage). While some are still parked, a save parks its own behind them,
so hdxrq hears of a dataset's writes in the order they were made.

Each parked record is taken with an atomic LPOP, so two CKAN processes never send the same one; a record
that fails again is pushed back at the head. The list keeps at most :data:`MAX_PENDING` records: beyond
that the oldest are dropped, and counted as lost.
"""

from __future__ import annotations

import logging

from ckan.common import config
from ckan.lib.redis import connect_to_redis

log = logging.getLogger(__name__)

RESEND_PER_SAVE = 20
"""How many parked notifications a save sends before its own (each a few milliseconds when hdxrq is up)."""
MAX_PENDING = 10_000


def _key() -> str:
    return f"ckanext-hdxrq:{config.get('ckan.site_id')}:pending"


def park(records: list[str]) -> int:
    """Append ``records`` (oldest first) behind the parked ones; how many older ones had to be dropped."""
    if not records:
        return 0
    key = _key()
    try:
        pipeline = connect_to_redis().pipeline()
        pipeline.rpush(key, *records)
        pipeline.ltrim(key, -MAX_PENDING, -1)
        length_after_push = pipeline.execute()[0]
    except Exception as error:  # CKAN's Redis down as well: the log line is all that is left
        log.error("hdxrq: could not park %d notification(s), they are lost: %s", len(records), error)
        return len(records)
    dropped = max(0, int(length_after_push) - MAX_PENDING)
    if dropped:
        log.error("hdxrq: more than %d notifications parked: the %d oldest were dropped", MAX_PENDING, dropped)
    return dropped


def take() -> str | None:
    """The oldest parked record, removed from the list; None when there is none (or Redis is down)."""
    try:
        record = connect_to_redis().lpop(_key())
    except Exception as error:
        log.warning("hdxrq: could not read the parked notifications: %s", error)
        return None
    if record is None:
        return None
    return record.decode() if isinstance(record, bytes) else str(record)


def put_back(record: str) -> None:
    """Return a record that failed again to the head of the list, where it was."""
    try:
        connect_to_redis().lpush(_key(), record)
    except Exception as error:
        log.error("hdxrq: could not put a parked notification back, it is lost: %s", error)


def count() -> int:
    """How many notifications are parked (0 when Redis cannot say)."""
    try:
        return int(connect_to_redis().llen(_key()))
    except Exception:
        return 0
