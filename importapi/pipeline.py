"""The import pipeline: a local file or URL in, a live PostGIS layer and its metadata out.

:func:`run_import` is the public, stable entry point: the job on ``geo_q``, ``./hdxrq.py import`` and
other slices' tests (tiles) all call it. It raises :class:`~importapi.errors.ImportProblem` subclasses
with wire codes, or :class:`~importapi.errors.ImportSuperseded`; it always removes its temporary folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core import runtime
from core.postgis import connect
from core.progress import report_progress
from core.settings import CoreSettings

from . import archive, encoding, formats, geojson, layers, ogr
from .download import download, redact_url
from .errors import FolderCreationProblem, ImportSuperseded, PushingToPostgisProblem, UnsupportedFormat
from .settings import ImportSettings

log = logging.getLogger(__name__)

FAST_PATH_LOGGED_LOAD = True
"""The GeoJSON fast path COPYs into a logged table (cheaper than an UNLOGGED load plus SET LOGGED)."""

JOB_DIR_PREFIX = "hdxrq-import-"
"""Job folders are ``<gis_tmp>/hdxrq-import-<pid>-<random>``; the worker start-up sweep relies on it."""


@dataclass(frozen=True)
class ImportResult:
    """A layer that is live in ``public.<layer_id>``."""

    layer_id: str
    bounding_box: str
    layer_fields: list[dict[str, str]]
    feature_count: int
    removed_features: int
    source_file: str
    source_layer: str
    driver: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (fetch, prepare, inspect, load, finalize), for the CLI and the benchmark."""

    @property
    def message(self) -> str:
        if self.removed_features:
            return f"Import successful. But {self.removed_features} invalid features were deleted"
        return "Import successful"

    def shape_info(self) -> dict[str, Any]:
        """The success ``shape_info`` of CONTRACTS.md §2.2 (keys in contract order)."""
        return {
            "state": "success",
            "message": self.message,
            "layer_id": self.layer_id,
            "error_type": "None",
            "error_class": "None",
            "bounding_box": self.bounding_box,
            "layer_fields": self.layer_fields,
        }


def run_import(
    source: str | os.PathLike[str],
    layer_id: str,
    *,
    settings: CoreSettings | None = None,
    still_current: Callable[[], bool] | None = None,
) -> ImportResult:
    """Import a local file or an http(s) URL into ``public.<layer_id>`` and describe the result.

    ``settings`` defaults to the process runtime's. ``still_current()``, when given, is asked before
    loading and inside the swap transaction; returning False abandons the import (ImportSuperseded)
    without touching the live table.
    """
    settings = settings or runtime.current().settings
    clock = _StageClock()
    with job_directory(settings) as work:
        path = clock.run("fetch", lambda: _fetch(str(source), work, settings))
        report_progress("unpacking", None)
        chosen, config, kind = clock.run("prepare", lambda: _prepare(path, work, settings))
        if still_current is not None and not still_current():
            raise ImportSuperseded(layer_id)
        result = None
        if kind == "geojson" and ImportSettings.of(settings).geojson_fast_path:
            result = _fast_geojson(chosen, layer_id, work, settings, still_current, clock)
        if result is None:
            report_progress("inspecting", None)
            drivers = formats.BY_KIND[kind].drivers
            info = clock.run("inspect", lambda: ogr.inspect(chosen, work, drivers))
            if still_current is not None and not still_current():
                raise ImportSuperseded(layer_id)
            result = _load_and_swap(info, config, layer_id, work, settings, still_current, clock)
    log.info("imported %s: %s", layer_id, clock.summary())
    return result


class _StageClock:
    """Wall-clock seconds per pipeline stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def run(self, stage: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return step()
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def summary(self) -> str:
        return ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in self.timings.items())


@contextmanager
def job_directory(settings: CoreSettings) -> Iterator[Path]:
    """A fresh folder for one import, removed whatever happens."""
    gis_tmp = ImportSettings.of(settings).gis_tmp
    base = Path(gis_tmp) if gis_tmp else Path(tempfile.gettempdir())
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-", dir=base))
    except OSError as error:
        raise FolderCreationProblem(f"Could not create a temporary folder: {error.strerror}") from None
    try:
        yield path
    finally:
        archive.remove_tree(path)


def _fetch(source: str, work: Path, settings: CoreSettings) -> Path:
    if source.lower().startswith(("http://", "https://")):
        report_progress("downloading", 0.0)
        target = work / "download"
        target.mkdir()
        done = download(source, target, settings, on_progress=lambda pct: report_progress("downloading", pct))
        log.info("downloaded %s (%d bytes)", redact_url(source), done.size)
        return done.path
    path = Path(source)
    if not path.is_file():
        raise UnsupportedFormat(f"No such file: {path.name}")
    return path


def _prepare(path: Path, work: Path, settings: CoreSettings) -> tuple[Path, dict[str, str], str]:
    """Unpack archives (two levels: a KMZ inside a zip) within one budget, pick the file, check that its
    extension and first bytes agree, fix its text encoding."""
    budget = archive.Budget.from_settings(ImportSettings.of(settings))
    fmt = formats.identify(path)
    for depth in range(3):
        if fmt.kind != "zip":
            break
        if depth == 2:
            raise UnsupportedFormat("Archives nested more than two levels are not supported")
        folder = work / f"unpacked{depth}"
        path = archive.choose_source(archive.unpack_zip(path, folder, budget), folder)
        fmt = formats.identify(path)
    if fmt.kind == "geojson":
        return encoding.utf8_copy(path, work), {}, fmt.kind
    if fmt.kind == "shp":
        return path, encoding.shapefile_config(path), fmt.kind
    return path, {}, fmt.kind


def _load_and_swap(
    info: ogr.SourceInfo,
    config: dict[str, str],
    layer_id: str,
    work: Path,
    settings: CoreSettings,
    still_current: Callable[[], bool] | None,
    clock: _StageClock,
) -> ImportResult:
    def load(conn: psycopg.Connection, staging: str) -> dict[str, Any]:
        options = _load_options(settings, staging, config)
        ogr.load(info, options, work, lambda p: report_progress("loading", p))
        # ogr2ogr loads into an UNLOGGED table (no WAL while loading); finalize makes it logged if asked
        return {"logged": ImportSettings.of(settings).layer_tables_logged}

    removed, meta = _through_staging(layer_id, settings, still_current, clock, load)
    return ImportResult(
        layer_id=layer_id,
        bounding_box=meta.bounding_box,
        layer_fields=meta.layer_fields,
        feature_count=meta.feature_count,
        removed_features=removed,
        source_file=_display_name(info.path, work),
        source_layer=info.layer.name,
        driver=info.driver,
        timings=clock.timings,
    )


def _fast_geojson(
    path: Path,
    layer_id: str,
    work: Path,
    settings: CoreSettings,
    still_current: Callable[[], bool] | None,
    clock: _StageClock,
) -> ImportResult | None:
    """Import a simple GeoJSON FeatureCollection without GDAL; None when it needs GDAL after all."""
    loaded: list[geojson.FastLoad] = []
    own = ImportSettings.of(settings)

    def load(conn: psycopg.Connection, staging: str) -> dict[str, Any]:
        deadline = time.monotonic() + own.ogr_timeout_sec
        table = sql.Identifier(layers.STAGING_SCHEMA, staging)
        outcome = geojson.load(
            path,
            conn,
            table,
            logged=own.layer_tables_logged and FAST_PATH_LOGGED_LOAD,
            deadline=deadline,
            on_progress=lambda p: report_progress("loading", p),
        )
        loaded.append(outcome)
        return {
            "logged": own.layer_tables_logged and not FAST_PATH_LOGGED_LOAD,
            "removed": outcome.removed,
            "map_types": True,  # the fast path creates character varying, integer and numeric columns only
        }

    try:
        removed, meta = _through_staging(layer_id, settings, still_current, clock, load)
    except geojson.NotSimple as reason:
        log.info("GeoJSON fast path not used for %s: %s", path.name, reason)
        return None
    return ImportResult(
        layer_id=layer_id,
        bounding_box=meta.bounding_box,
        layer_fields=meta.layer_fields,
        feature_count=meta.feature_count,
        removed_features=removed,
        source_file=_display_name(path, work),
        source_layer=loaded[0].layer_name,
        driver="GeoJSON (fast path)",
        timings=clock.timings,
    )


def _through_staging(
    layer_id: str,
    settings: CoreSettings,
    still_current: Callable[[], bool] | None,
    clock: _StageClock,
    load: Callable[[psycopg.Connection, str], dict[str, Any]],
) -> tuple[int, layers.LayerMetadata]:
    """Load into a fresh staging table with ``load(conn, name)``, then finalise and swap it in.

    ``load`` returns keyword arguments for :func:`layers.finalize_and_swap`. The staging table is dropped
    whatever happens, so a loader that gives up (GeoJSON fast path) leaves nothing behind.
    """
    staging = layers.new_staging_name()
    try:
        conn = connect(settings, autocommit=True)
    except Exception as error:
        raise PushingToPostgisProblem(f"Cannot connect to PostGIS: {type(error).__name__}") from None
    with conn:
        layers.ensure_staging_schema(conn)
        # Held while the staging table exists: the start-up sweep leaves locked staging tables alone.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"hdxrq-staging:{staging}",))
        try:
            report_progress("loading", 0.0)
            finalize_options = clock.run("load", lambda: load(conn, staging))
            report_progress("finalizing", None)
            return clock.run(
                "finalize",
                lambda: layers.finalize_and_swap(
                    conn,
                    staging,
                    layer_id,
                    still_current=still_current,
                    open_reader=lambda: connect(settings, autocommit=True),
                    **finalize_options,
                ),
            )
        finally:
            layers.drop_staging(conn, staging)
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"hdxrq-staging:{staging}",))


def _load_options(settings: CoreSettings, staging: str, config: dict[str, str]) -> ogr.LoadOptions:
    postgis = settings.postgis
    return ogr.LoadOptions(
        conninfo=postgis.conninfo(with_password=False).replace("'hdxrq'", "'hdxrq-import'"),
        password=postgis.password.get_secret_value() if postgis.password else None,
        schema=layers.STAGING_SCHEMA,
        table=staging,
        timeout_sec=ImportSettings.of(settings).ogr_timeout_sec,
        config=config,
        connect_ports=() if postgis.host.startswith("/") else (postgis.port,),
    )


def _display_name(path: Path, work: Path) -> str:
    try:
        return str(path.relative_to(work))
    except ValueError:
        return path.name
