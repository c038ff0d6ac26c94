"""Validation of ``POST /api/send-analytics`` bodies and the messages buffered for each destination.

Pure functions over dicts: no Redis, no HTTP. The edge turns one CKAN body into at most two buffered
messages, one per destination (Mixpanel, GA4), so that a destination that is down never makes the other
one resend (GA4 has no de-duplication).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from .errors import InvalidAnalyticsEvent

DEFAULT_GA_CLIENT_ID = "anonymous"
"""What CKAN puts in ``cid`` when it knows no client; used when ``cid`` is missing too."""


@dataclass(frozen=True)
class AnalyticsEvent:
    """One accepted event, ready to be buffered: the messages for each destination it goes to."""

    mixpanel: dict[str, Any] | None
    ga4: dict[str, Any] | None


def parse_event(body: Any, *, now: float | None = None) -> AnalyticsEvent:
    """Check a send-analytics body against CONTRACTS.md §2.5 and build its buffered messages.

    Raises :class:`InvalidAnalyticsEvent` with a message naming the first problem.
    """
    if not isinstance(body, dict):
        raise InvalidAnalyticsEvent("the request body must be a JSON object")
    event_name = body.get("event_name")
    if not isinstance(event_name, str) or not event_name.strip():
        raise InvalidAnalyticsEvent("'event_name' must be a non-empty string")
    send_mixpanel = _flag(body, "send_mixpanel")
    send_ga = _flag(body, "send_ga")
    if not (send_mixpanel or send_ga):
        raise InvalidAnalyticsEvent("nothing to send: 'send_mixpanel' and 'send_ga' are both false or missing")
    meta = _mixpanel_meta(body)
    event_time = _event_time(meta, now)
    mixpanel = _mixpanel_message(body, event_name, meta, event_time) if send_mixpanel else None
    ga4 = _ga4_message(body, event_time) if send_ga else None
    return AnalyticsEvent(mixpanel=mixpanel, ga4=ga4)


def insert_id(*parts: Any) -> str:
    """A stable ``$insert_id`` (32 hex characters) for an event: the same request always gets the same one."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    if value is None:
        return False
    raise InvalidAnalyticsEvent(f"'{name}' must be true or false")


def _mixpanel_meta(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("mixpanel_meta")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidAnalyticsEvent("'mixpanel_meta' must be a JSON object")
    return meta


def _event_time(meta: dict[str, Any], now: float | None) -> float:
    """``mixpanel_meta.time`` (seconds since the epoch) or, when CKAN sent none, the time it reached us."""
    value = meta.get("time")
    if value is None:
        return time.time() if now is None else now
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidAnalyticsEvent("'mixpanel_meta.time' must be a positive number of seconds since 1970")
    return float(value)


def _required_string(body: dict[str, Any], name: str, reason: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidAnalyticsEvent(f"'{name}' must be a non-empty string when {reason}")
    return value


def _mixpanel_message(body: dict[str, Any], event_name: str, meta: dict[str, Any], at: float) -> dict[str, Any]:
    token = _required_string(body, "mixpanel_token", "'send_mixpanel' is true")
    distinct_id = _required_string(body, "mixpanel_tracking_id", "'send_mixpanel' is true")
    properties = {**meta, "time": at}
    event_id = meta.get("$insert_id") or insert_id("mixpanel", token, distinct_id, event_name, properties)
    return {
        "token": token,
        "distinct_id": distinct_id,
        "event": event_name,
        "time": at,
        "insert_id": str(event_id),
        "properties": properties,
    }


def _ga4_message(body: dict[str, Any], at: float) -> dict[str, Any]:
    ga_meta = body.get("ga_meta")
    if not isinstance(ga_meta, dict) or not ga_meta:
        raise InvalidAnalyticsEvent("'ga_meta' must be a non-empty JSON object when 'send_ga' is true")
    return {"time": at, "insert_id": insert_id("ga4", ga_meta, at), "ga_meta": ga_meta}
