"""The floor of ``POST /api/send-analytics`` on a machine: a WSGI app that does nothing but its Redis write.

``bench/analytics_bench.py`` serves it with the very uWSGI options ``./hdxrq.py serve`` uses and measures it
in the same rounds as the real endpoint. It reads the body, appends it to a stream with one ``XADD`` (one
round trip, as the endpoint's buffer append) and answers ``{"success":true}``: no validation, no metrics,
no Flask. What the real endpoint costs above it is ours; what this costs is the server, Redis and the
machine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from redis import Redis

BODY = b'{"success":true}\n'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
STREAM = "bench:floor"

_redis: Redis | None = None


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _redis
    if _redis is None:  # per process, after uWSGI forked it
        _redis = Redis(
            host=os.environ.get("HDX_REDIS_ADDR", "127.0.0.1"),
            port=int(os.environ.get("HDX_REDIS_PORT", "6379")),
            db=int(os.environ["HDX_REDIS_GISDB"]),
        )
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    _redis.execute_command("XADD", STREAM, "MAXLEN", "~", "10000", "*", "m", body)
    start_response("200 OK", HEADERS)
    return [BODY]
