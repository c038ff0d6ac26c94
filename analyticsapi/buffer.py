"""The durable Redis buffer between the send-analytics edge and the delivery workers.

One Redis stream per destination (``hdxrq:analytics:stream:mixpanel`` and ``...:ga4``) on the RQ Redis,
read through one consumer group. Entries are *claimed*, never popped: an entry stays in the group's
pending list until it was delivered (XACK + XDEL) or dead-lettered, so a worker killed mid-batch loses
nothing. Who reads when, and the flag the edge raises while buffering, is :mod:`analyticsapi.drain`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import ResponseError
from rq.utils import as_text

if TYPE_CHECKING:
    from redis import Redis

    from .events import AnalyticsEvent

PREFIX = "hdxrq:analytics"
SINKS: tuple[str, ...] = ("mixpanel", "ga4")
GROUP = "delivery"
CONSUMER = "sender"
"""One consumer per stream: the drain's lease makes sure one process at a time reads as it."""
DEAD_LETTER_KEY = f"{PREFIX}:dead-letter"
MESSAGE_FIELD = b"m"


def stream_key(sink: str) -> str:
    """The Redis stream buffering the events of destination ``sink``."""
    return f"{PREFIX}:stream:{sink}"


def messages_of(event: AnalyticsEvent) -> list[tuple[str, dict[str, Any]]]:
    """(destination, message) for each destination ``event`` goes to."""
    pairs = [("mixpanel", event.mixpanel), ("ga4", event.ga4)]
    return [(sink, message) for sink, message in pairs if message is not None]


def encode(message: dict[str, Any]) -> bytes:
    """Compact JSON; orjson for speed, Python's json for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Entry:
    """One buffered event: its stream id and the message the edge stored."""

    id: str
    message: dict[str, Any]


class SinkBuffer:
    """Claim, acknowledge and dead-letter the entries of one destination's stream."""

    def __init__(self, redis: Redis, sink: str) -> None:
        self.redis = redis
        self.sink = sink
        self.key = stream_key(sink)

    def ensure_group(self) -> None:
        """Create the consumer group (reading from the stream's start) unless it exists."""
        try:
            self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def claim(self, count: int, known: Mapping[str, Entry] | None = None) -> list[Entry]:
        """Entries to send next, in one round trip: those claimed earlier and never acknowledged (a killed
        sender's batch, a batch held for the linger or waiting for a retry), then up to ``count`` new ones.

        ``known``: entries this reader decoded before (a held batch is read again every pass), reused.
        """
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xreadgroup(GROUP, CONSUMER, {self.key: "0"}, count=count)
            pipe.xreadgroup(GROUP, CONSUMER, {self.key: ">"}, count=count)
            pending, fresh = pipe.execute()
        return self._entries(pending, known or {}) + self._entries(fresh, known or {})

    def _entries(self, reply: Any, known: Mapping[str, Entry]) -> list[Entry]:
        entries: list[Entry] = []
        orphans: list[str] = []
        for _stream, items in reply or []:
            for raw_id, fields in items:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                if not fields or MESSAGE_FIELD not in fields:
                    orphans.append(entry_id)  # deleted while pending: nothing left to deliver
                    continue
                entry = known.get(entry_id)  # json, not orjson: orjson reads integers past 64 bits as floats
                entries.append(entry if entry is not None else Entry(entry_id, json.loads(fields[MESSAGE_FIELD])))
        if orphans:
            self.ack([Entry(entry_id, {}) for entry_id in orphans])
        return entries

    def ack(self, entries: list[Entry]) -> None:
        """Mark ``entries`` delivered and drop them from the stream."""
        if not entries:
            return
        ids = [entry.id for entry in entries]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()

    def dead_letter(self, entries: list[Entry], reason: str, status: int | None = None) -> None:
        """Move ``entries`` to the dead-letter list (with why) and out of the stream, atomically."""
        if not entries:
            return
        failed_at = time.time()
        records = [
            encode(
                {"sink": self.sink, "reason": reason, "status": status, "failed_at": failed_at, "message": e.message}
            )
            for e in entries
        ]
        ids = [entry.id for entry in entries]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(DEAD_LETTER_KEY, *records)
            pipe.xack(self.key, GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()

    def backlog(self) -> int:
        """Entries still in the stream (pending or not yet read)."""
        return int(self.redis.xlen(self.key))

    def has_unread(self) -> bool:
        """Whether entries were added that no sender has claimed yet (newer than the group's last read)."""
        last_added = self.redis.xinfo_stream(self.key)["last-generated-id"]
        for group in self.redis.xinfo_groups(self.key):
            if as_text(group["name"]) == GROUP:
                return _stream_id(last_added) > _stream_id(group["last-delivered-id"])
        return self.backlog() > 0


def _stream_id(value: bytes | str) -> tuple[int, int]:
    milliseconds, _, sequence = as_text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def dead_letters(redis: Redis, limit: int | None = None) -> list[dict[str, Any]]:
    """The dead-lettered events, oldest first (``limit`` caps how many)."""
    end = -1 if limit is None else max(0, limit - 1)
    return [json.loads(raw) for raw in redis.lrange(DEAD_LETTER_KEY, 0, end)]


def replay_dead_letters(redis: Redis, limit: int | None = None, sink: str | None = None) -> int:
    """Put dead-lettered events back in their stream (same ``$insert_id``); return how many moved."""
    moved = 0
    for raw in redis.lrange(DEAD_LETTER_KEY, 0, -1):
        if limit is not None and moved >= limit:
            break
        record = json.loads(raw)
        if sink is not None and record.get("sink") != sink:
            continue
        with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream_key(record["sink"]), {MESSAGE_FIELD: encode(record["message"])})
            pipe.lrem(DEAD_LETTER_KEY, 1, raw)
            pipe.execute()
        moved += 1
    return moved
