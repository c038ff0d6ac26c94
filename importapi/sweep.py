"""Worker start-up hook: remove what imports of killed workers left behind.

Job folders are ``hdxrq-import-<pid>-*``: a folder whose process is gone (or that is older than a day,
in case the pid was reused) is removed. Staging tables are dropped unless an import still holds the
advisory lock that guards each one while it exists.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from pathlib import Path

from psycopg import sql

from core import procs
from core.postgis import connect
from core.runtime import Runtime

from . import archive, layers
from .pipeline import JOB_DIR_PREFIX
from .settings import ImportSettings

log = logging.getLogger(__name__)

MAX_AGE_SEC = 24 * 3600
_DIR_NAME = re.compile(rf"^{re.escape(JOB_DIR_PREFIX)}(\d+)-")


def sweep_leftovers(rt: Runtime) -> None:
    """Remove orphaned job folders and staging tables (called once when a worker starts)."""
    gis_tmp = ImportSettings.of(rt.settings).gis_tmp
    base = Path(gis_tmp) if gis_tmp else Path(tempfile.gettempdir())
    removed = sweep_job_folders(base)
    try:
        dropped = sweep_staging_tables(rt)
    except Exception as error:  # PostGIS down must not stop a worker from starting
        log.warning("could not sweep staging tables: %s", type(error).__name__)
        dropped = 0
    if removed or dropped:
        log.info("swept %d leftover import folders and %d staging tables", removed, dropped)


def sweep_job_folders(base: Path, now: float | None = None) -> int:
    """Remove job folders of dead processes (or older than a day) under ``base``; how many."""
    now = time.time() if now is None else now
    removed = 0
    if not base.is_dir():
        return 0
    for entry in base.iterdir():
        match = _DIR_NAME.match(entry.name)
        if not match or not entry.is_dir():
            continue
        if not procs.alive(int(match.group(1))) or now - entry.stat().st_mtime > MAX_AGE_SEC:
            archive.remove_tree(entry)
            removed += 1
    return removed


def sweep_staging_tables(rt: Runtime) -> int:
    """Drop staging tables no running import holds; how many."""
    dropped = 0
    with connect(rt.settings, autocommit=True) as conn:
        for name in layers.staging_tables(conn):
            lock_key = f"hdxrq-staging:{name}"
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (lock_key,)).fetchone()
            if not row or not row[0]:
                continue
            try:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(layers.STAGING_SCHEMA, name)))
                dropped += 1
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
    return dropped
