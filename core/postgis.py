"""PostGIS access: connections and a pool, identifiers always quoted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import ConnectionPool

if TYPE_CHECKING:
    from .settings import Settings

CONNECT_TIMEOUT_SEC = 5


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """A new connection to the PostGIS database."""
    return psycopg.connect(settings.postgres_conninfo(), connect_timeout=CONNECT_TIMEOUT_SEC, autocommit=autocommit)


def open_pool(settings: Settings) -> ConnectionPool:
    """A pool for request handlers (tiles, checks): no per-request connection set-up."""
    return ConnectionPool(
        settings.postgres_conninfo(),
        min_size=1,
        max_size=settings.gisdb_pool_size,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SEC, "autocommit": True},
        open=True,
        timeout=10,
        name="postgis",
    )
