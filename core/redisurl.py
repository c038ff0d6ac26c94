"""Redis URLs: the plain schemes redis-py reads, and ``redis+sentinel://`` for a Sentinel-managed primary.

``redis+sentinel://[[user]:password@]host:port[,host:port...]/<service name>[/<db>]``: the sentinels to ask,
the name they monitor the primary under, and the database; the password (percent-encoded) is the data
nodes', not the sentinels'. This is the form rq-dashboard's ``redis_sentinel_url`` reads too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_DEFAULT_PORT = 26379
PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL names: the sentinels, the monitored service, the db and its auth."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Read a ``redis+sentinel://`` URL; a ``ValueError`` (never echoing the password) when it is malformed."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    rest = url[len(SENTINEL_SCHEME) + 3 :].split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL needs /<service name>[/<db>] after the sentinels")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: the database must be a number")
    return SentinelAddress(
        sentinels=tuple(_host_port(item) for item in hosts.split(",")),
        service=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def url_password(url: str) -> str | None:
    """The password a Redis URL of either scheme carries (for log scrubbing), or ``None``."""
    if is_sentinel_url(url):
        return parse_sentinel_url(url).password
    netloc = url.partition("://")[2].split("/", 1)[0]
    auth, at, _ = netloc.rpartition("@")
    return (unquote(auth.partition(":")[2]) or None) if at else None


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = item, str(SENTINEL_DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: {item!r} is not host:port")
    return host, int(port)
