"""The event bus: writing change events to the Redis stream and reading them as a consumer group member.

Wire format (CONTRACTS.md §3.1): one entry per event with exactly two fields, ``event_type`` and ``body``
(the event as JSON). All events of one request go in one MULTI/EXEC, guarded by an idempotency marker so
that a retried job never writes the same request twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError, WatchError
from rq.utils import as_text

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

MARKER_PREFIX = "hdxrq:events:published:"
"""Key prefix (on the stream Redis) of the per-request idempotency markers."""
MARKER_TTL_SEC = 7 * 24 * 3600
DEAD_LETTER_SUFFIX = ":dead-letter"


def encode_entry(event: dict[str, Any]) -> dict[str, str]:
    """The two stream fields of one event."""
    return {"event_type": str(event["event_type"]), "body": json.dumps(event, ensure_ascii=False)}


def publish_events(
    redis: Redis,
    stream: str,
    events: Sequence[dict[str, Any]],
    *,
    request_id: str,
    maxlen: int,
    marker_ttl: int = MARKER_TTL_SEC,
) -> list[str]:
    """Append the events of one request atomically, once; returns the entry ids (``[]`` if already written)."""
    if not events:
        return []
    marker = MARKER_PREFIX + request_id
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(marker)
                if pipe.exists(marker):
                    log.info("events of request %s are already on the stream; not writing them again", request_id)
                    return []
                pipe.multi()
                for event in events:
                    pipe.xadd(stream, encode_entry(event), maxlen=maxlen, approximate=True)
                pipe.set(marker, len(events), ex=marker_ttl)
                results = pipe.execute()
                return [as_text(entry_id) for entry_id in results[: len(events)]]
            except WatchError:
                continue  # another attempt wrote the marker meanwhile: check it again


def already_published(redis: Redis, request_id: str) -> bool:
    """Whether the events of ``request_id`` are on the stream."""
    return bool(redis.exists(MARKER_PREFIX + request_id))


@dataclass(frozen=True)
class Entry:
    """One stream entry as a consumer sees it."""

    id: str
    event_type: str
    body: str

    def event(self) -> Any:
        """The decoded event body."""
        return json.loads(self.body)

    def fields(self) -> dict[str, str]:
        return {"event_type": self.event_type, "body": self.body}


def decode_entry(entry_id: Any, fields: dict[Any, Any]) -> Entry:
    """An :class:`Entry` from what redis-py returns for one stream entry."""
    decoded = {as_text(key): as_text(value) for key, value in fields.items()}
    return Entry(as_text(entry_id), decoded.get("event_type", ""), decoded.get("body", ""))


class GroupConsumer:
    """A member of a consumer group: takes over stale entries, reads new ones, acks what it handled."""

    def __init__(self, redis: Redis, stream: str, group: str, consumer: str) -> None:
        self.redis, self.stream, self.group, self.consumer = redis, stream, group, consumer

    def ensure_group(self, *, from_start: bool = False) -> bool:
        """Create the group (at the stream's start or its end) unless it exists; returns whether it was made."""
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0" if from_start else "$", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
            return False
        return True

    def claim_stale(self, min_idle_ms: int, count: int = 100) -> list[Entry]:
        """Take over entries pending longer than ``min_idle_ms`` (left by dead consumers), oldest first."""
        claimed: list[Entry] = []
        start = "0-0"
        while True:
            reply = self.redis.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_ms, start_id=start, count=count
            )
            next_start, entries = reply[0], reply[1]
            claimed += [decode_entry(entry_id, fields) for entry_id, fields in entries if fields is not None]
            start = as_text(next_start)
            if start == "0-0" or len(claimed) >= count:
                return claimed

    def read_new(self, count: int, block_ms: int | None) -> list[Entry]:
        """Entries never delivered to the group before (``>``), waiting up to ``block_ms``."""
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        entries: list[Entry] = []
        for _stream, items in reply or []:
            entries += [decode_entry(entry_id, fields) for entry_id, fields in items if fields is not None]
        return entries

    def ack(self, entry_ids: Iterable[str]) -> int:
        """Mark entries handled."""
        ids = list(entry_ids)
        return int(self.redis.xack(self.stream, self.group, *ids)) if ids else 0

    def delivery_counts(self, entry_ids: Iterable[str]) -> dict[str, int]:
        """How many times each pending entry was delivered."""
        counts = {}
        for entry_id in entry_ids:
            pending = self.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            if pending:
                counts[entry_id] = int(pending[0]["times_delivered"])
        return counts

    def dead_letter(self, entry: Entry, reason: str) -> str:
        """Copy an entry to the dead-letter stream with the reason, and ack it, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            fields = {**entry.fields(), "source_id": entry.id, "group": self.group, "reason": reason[:500]}
            pipe.xadd(self.stream + DEAD_LETTER_SUFFIX, fields)
            pipe.xack(self.stream, self.group, entry.id)
            dead_id, _acked = pipe.execute()
        return as_text(dead_id)
