"""PostGIS access: connections and a pool, identifiers always quoted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import ConnectionPool

if TYPE_CHECKING:
    from .settings import CoreSettings

CONNECT_TIMEOUT_SEC = 5


def connect(settings: CoreSettings, *, autocommit: bool = False) -> psycopg.Connection:
    """A new connection to the PostGIS database."""
    return psycopg.connect(settings.postgis.conninfo(), connect_timeout=CONNECT_TIMEOUT_SEC, autocommit=autocommit)


def open_pool(settings: CoreSettings) -> ConnectionPool:
    """A pool for request handlers (tiles, checks): no per-request connection set-up."""
    return ConnectionPool(
        settings.postgis.conninfo(),
        min_size=1,
        max_size=settings.postgis.pool_size,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SEC, "autocommit": True},
        open=True,
        timeout=10,
        name="postgis",
    )
