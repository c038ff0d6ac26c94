"""Everything a Redis database holds, as text: for tests that look for a secret (or its absence) anywhere."""

from __future__ import annotations

import zlib

from redis import Redis


def everything_in(client: Redis) -> str:
    """Every key and value of the client's database; zlib-compressed values (rq's job data) decompressed."""
    parts = []
    for key in client.scan_iter(count=1000):
        parts.append(repr(key))
        parts += [_readable(value) for value in _values(client, key)]
    return "\n".join(parts)


def _values(client: Redis, key: bytes) -> list[bytes]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        return [item for _, fields in client.xrange(key) for pair in fields.items() for item in pair]
    return []


def _readable(value: bytes) -> str:
    try:
        value = zlib.decompress(value)
    except zlib.error:
        pass
    return value.decode(errors="replace")
