"""Change-event requests for the fault tests: real dataset pairs from ``shared/examples`` and their events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redis import Redis

from eventsapi.detect import detect_events

EXAMPLES = Path(__file__).resolve().parents[1] / "eventsapi" / "samples"  # copies of shared/examples
CASES = ("case-01", "case-05", "case-07")


def change_request(number: int) -> dict[str, Any]:
    """A create-change-events body (one of the example pairs, with a user name of its own)."""
    case = CASES[number % len(CASES)]
    old = json.loads((EXAMPLES / f"{case}-old.json").read_text())
    new = json.loads((EXAMPLES / f"{case}-new.json").read_text())
    return {"username": f"user-{number}", "old_dataset_dict": old, "new_dataset_dict": new}


def expected_entries(bodies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(event_type, user) of every event the bodies must produce on the stream, sorted."""
    found = []
    for body in bodies:
        events = detect_events(body["old_dataset_dict"], body["new_dataset_dict"], body["username"], "t")
        found += [(event["event_type"], body["username"]) for event in events]
    return sorted(found)


def stream_entries(redis: Redis, stream: str = "hdx_event_stream") -> list[tuple[str, str]]:
    """(event_type, user) of every entry on the stream, sorted."""
    entries = []
    for _, fields in redis.xrange(stream):
        event = json.loads(fields[b"body"])
        entries.append((fields[b"event_type"].decode(), _user(event)))
    return sorted(entries)


def _user(event: dict[str, Any]) -> str:
    for key in ("initiator_user_name", "username", "user"):
        if isinstance(event.get(key), str):
            return event[key]
    raise AssertionError(f"no user name in {sorted(event)}")
