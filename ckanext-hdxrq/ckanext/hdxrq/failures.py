"""Counting notifications hdxrq did not take, in CKAN's Redis (shared by all of the site's processes).

Counts by kind (``add-layer``, ``delete-one-layer``, ``create-change-events``) and the last failure of
each kind are read by the action ``hdxrq_status_show``. Counting must never fail a save: without Redis
the failure is only logged.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from ckan.common import config
from ckan.lib.redis import connect_to_redis

log = logging.getLogger(__name__)


def _keys() -> tuple[str, str]:
    prefix = f"ckanext-hdxrq:{config.get('ckan.site_id')}"
    return f"{prefix}:failures", f"{prefix}:last-failure"


def record(kind: str, message: str) -> None:
    """Count one failed notification of ``kind`` and keep its message as the latest of that kind."""
    counts_key, last_key = _keys()
    last = {"message": message, "time": datetime.datetime.now(datetime.UTC).isoformat()}
    try:
        pipeline = connect_to_redis().pipeline()
        pipeline.hincrby(counts_key, kind, 1)
        pipeline.hset(last_key, kind, json.dumps(last))
        pipeline.execute()
    except Exception as error:  # Redis down as well: the log line is all that is left
        log.warning("hdxrq: could not count a %s failure in Redis: %s", kind, error)


def summary() -> dict[str, Any]:
    """``{"failures": {kind: count}, "last_failures": {kind: {"message", "time"}}}``."""
    counts_key, last_key = _keys()
    redis = connect_to_redis()
    counts = {_text(kind): int(count) for kind, count in redis.hgetall(counts_key).items()}
    last = {_text(kind): json.loads(value) for kind, value in redis.hgetall(last_key).items()}
    return {"failures": counts, "last_failures": last}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
