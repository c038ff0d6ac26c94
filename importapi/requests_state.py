"""The newest add-layer request per resource, in the RQ Redis: one import at a time, newest wins.

Each resource has one hash ``hdxrq:geopreview:<resource_id>``:

* ``gen``: incremented by every add-layer (and delete-one-layer) call;
* ``dataset_id``, ``url``, ``url_type``: the newest request (``url`` empty after a delete);
* ``active``: ``1`` while a job is queued or running that will still look at the hash;
* ``delivered``: the highest generation whose callback CKAN accepted (older callbacks are then dropped).

The API sets ``active`` when it bumps ``gen`` (one Lua script) and enqueues a job only if nobody was
active. The job imports the newest request, and clears ``active`` only if ``gen`` did not move meanwhile
(another script); otherwise it imports again. So a queued request is superseded by a newer one, a running
import re-runs with the newest URL, and no request is left without a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

KEY_PREFIX = "hdxrq:geopreview:"
TTL_SEC = 30 * 24 * 3600

_SUBMIT = """
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'dataset_id', ARGV[1], 'url', ARGV[2], 'url_type', ARGV[3])
local was_active = redis.call('HGET', KEYS[1], 'active') == '1'
redis.call('HSET', KEYS[1], 'active', '1')
redis.call('EXPIRE', KEYS[1], ARGV[4])
if was_active then return {gen, 1} end
return {gen, 0}
"""
_FINISH = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'active', '0')
  return 1
end
return 0
"""
_DELIVERED = """
local current = tonumber(redis.call('HGET', KEYS[1], 'delivered') or '0')
if tonumber(ARGV[1]) >= current then redis.call('HSET', KEYS[1], 'delivered', ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class ImportRequest:
    """The newest request for a resource."""

    generation: int
    dataset_id: str
    url: str
    url_type: str


class RequestState:
    """Read and update the newest-request hash of one resource."""

    def __init__(self, redis: Redis, resource_id: str) -> None:
        self.redis = redis
        self.key = KEY_PREFIX + resource_id

    def submit(self, dataset_id: str, url: str, url_type: str) -> tuple[int, bool]:
        """Record a new request; its generation and whether a job was already active."""
        gen, was_active = self.redis.eval(_SUBMIT, 1, self.key, dataset_id, url, url_type, TTL_SEC)  # type: ignore[misc]
        return int(gen), bool(was_active)

    def cancel(self) -> int:
        """Make any queued or running import of the resource stand down (the layer is being deleted)."""
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key, "gen", 1)
        pipe.hset(self.key, "url", "")
        pipe.expire(self.key, TTL_SEC)
        gen, *_ = pipe.execute()
        return int(gen)

    def read(self) -> ImportRequest | None:
        """The newest request, or None when there is nothing to import."""
        fields = {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key).items()}
        if not fields.get("url"):
            return None
        return ImportRequest(int(fields.get("gen", 0)), fields.get("dataset_id", ""), fields["url"], fields["url_type"])

    def generation(self) -> int:
        """The current generation (0 when the resource was never requested)."""
        return int(self.redis.hget(self.key, "gen") or 0)  # type: ignore[arg-type]

    def finish(self, generation: int) -> bool:
        """Clear ``active`` if ``generation`` is still the newest; False means: import again."""
        return bool(self.redis.eval(_FINISH, 1, self.key, str(generation)))  # type: ignore[misc]

    def release(self) -> None:
        """Clear ``active`` unconditionally (the job is giving up; the next request enqueues anew)."""
        self.redis.hset(self.key, "active", "0")

    def delivered_generation(self) -> int:
        return int(self.redis.hget(self.key, "delivered") or 0)  # type: ignore[arg-type]

    def mark_delivered(self, generation: int) -> None:
        self.redis.eval(_DELIVERED, 1, self.key, str(generation))  # type: ignore[misc]
