"""GDAL's command-line tools as child processes: ``ogrinfo`` to inspect a source, ``ogr2ogr`` to load it.

The files they open are written by attackers, so every call is fenced:

* **drivers**: GDAL may open the file only with the drivers of its format (``importapi.formats``), plus
  PostgreSQL as ogr2ogr's output. GDAL 3.6 has no ``-if``: every other installed driver is listed in
  ``GDAL_SKIP`` (computed from ``ogrinfo --formats``), so a VRT, GML, CSV... cannot be opened at all;
* **no network**: GDAL's HTTP client is pointed at a proxy on port 0 of the loopback address (every
  request fails at once, nothing leaves), PROJ's network access is off;
* **no extensions, no plugins**: the child's environment is built here, not inherited: no
  ``OGR_SQLITE_LOAD_EXTENSIONS``, no ``GDAL_DRIVER_PATH``;
* **sandbox** (:mod:`core.sandbox`, where the kernel has Landlock): the child reads only system paths and
  the job's folder (not ``/proc``: not its own environment, which holds the database password for
  ogr2ogr), writes only the job's folder, and connects only to the database's port (ogrinfo: nowhere);
* **arguments**: argv lists, no shell; the source is an absolute path of ours; nothing read from the
  file becomes a bare argument: ogrinfo describes every layer (``-al``), and ogr2ogr gets no layer name
  for a one-layer source and otherwise selects the layer with ``-sql @file`` (the name quoted inside a
  file of the job, after the option that takes it);
* **limits**: a child that outlives its deadline is killed, and so is one whose worker dies
  (``PR_SET_PDEATHSIG``); the database password travels in ``PGPASSWORD`` of ogr2ogr only.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import redact_internals
from core.sandbox import Sandbox, before_exec

from .errors import ImportTimeout, NoLayerFound, PushingToPostgisProblem, UnsupportedFormat

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_SEC = 120
OUTPUT_DRIVER = "PostgreSQL"
NETWORK_BACKSTOP = "http://127.0.0.1:0"
"""Where GDAL's HTTP client is sent instead of any URL: a connection to port 0 fails before any packet."""
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "GDAL_DATA", "PROJ_DATA", "PROJ_LIB", "GDAL_CACHEMAX")
"""The worker's variables a GDAL child keeps; everything else of GDAL's configuration is set here."""
_PROXY_VARIABLES = ("GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY", "http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY")
_DRIVER_LINE = re.compile(r"^\s+(?P<name>\S.*?) -[a-z ,]+- \(", re.M)
_UNSAFE_LAYER_NAME = re.compile(r'["\\\x00-\x1f\x7f]')
_FIELD_LINE = re.compile(r"^(?P<name>.+): (?P<type>[A-Za-z0-9]+(?:\([A-Za-z0-9]+\))?(?: List)?) \(\d+\.\d+\)$")
_NUMERIC_OGR_TYPES = {"Real", "Integer64"}


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a source, as ``ogrinfo -so`` describes it."""

    name: str
    geometry_type: str
    feature_count: int | None
    has_srs: bool
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def is_spatial(self) -> bool:
        return self.geometry_type.lower() != "none"


@dataclass(frozen=True)
class SourceInfo:
    """A source file and the layer chosen from it."""

    path: Path
    driver: str
    layer: LayerInfo
    layer_count: int
    drivers: tuple[str, ...] = ()
    """The GDAL drivers allowed to open the source."""


@dataclass(frozen=True)
class LoadOptions:
    """How ogr2ogr writes into PostGIS."""

    conninfo: str
    password: str | None
    schema: str
    table: str
    timeout_sec: float
    config: Mapping[str, str] = field(default_factory=dict)
    connect_ports: tuple[int, ...] = ()
    """The TCP ports ogr2ogr may connect to (the database's)."""


@functools.cache
def installed_drivers() -> tuple[str, ...]:
    """Every vector driver of the installed GDAL, by the short names ``GDAL_SKIP`` takes."""
    done = subprocess.run(
        ["ogrinfo", "--formats"], env=_base_env(), capture_output=True, text=True, timeout=INSPECT_TIMEOUT_SEC
    )
    names = tuple(match.group("name") for match in _DRIVER_LINE.finditer(done.stdout))
    if done.returncode != 0 or not names:
        raise UnsupportedFormat("GDAL's drivers could not be listed")
    return names


def list_drivers_once(_runtime: object) -> None:
    """Worker start-up hook: list GDAL's drivers in the worker, so its work horses inherit the list
    instead of running ``ogrinfo --formats`` for every import."""
    installed_drivers()


def skipped_drivers(allowed: Sequence[str]) -> str:
    """``GDAL_SKIP`` for a child that may use only ``allowed`` drivers."""
    return ",".join(name for name in installed_drivers() if name not in allowed)


def _base_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def child_env(
    extra: Mapping[str, str] | None = None, *, drivers: Sequence[str], work: Path | None = None
) -> dict[str, str]:
    """The whole environment of a GDAL child: allowed ``drivers`` only, no network, temporary files and
    home in ``work``; ``extra`` adds the child's own variables (``PGPASSWORD`` for ogr2ogr)."""
    env = _base_env()
    env["GDAL_SKIP"] = skipped_drivers(drivers)
    env.update(dict.fromkeys(_PROXY_VARIABLES, NETWORK_BACKSTOP))
    env["PROJ_NETWORK"] = "OFF"
    if work is not None:
        env.update(HOME=str(work), TMPDIR=str(work), CPL_TMPDIR=str(work))
    env.update(extra or {})
    return env


@contextmanager
def _confined(source: Path, work: Path, connect_ports: Sequence[int] = ()) -> Iterator[dict[str, object]]:
    """``subprocess`` arguments that confine a GDAL child reading ``source`` (see the module docstring).

    The source's own folder is readable too: it is the job's folder for a download, the user's folder for
    ``./hdxrq.py import ./file``."""
    read = [*_data_paths(), source.absolute().parent]
    sandbox = Sandbox.prepare(read=read, write=[work], connect_ports=connect_ports)
    if sandbox is None:
        _warn_unconfined()
    try:
        yield {"preexec_fn": before_exec(sandbox), "pass_fds": sandbox.pass_fds if sandbox else ()}
    finally:
        if sandbox is not None:
            sandbox.close()


def _data_paths() -> list[str]:
    return [os.environ[name] for name in ("GDAL_DATA", "PROJ_DATA", "PROJ_LIB") if os.environ.get(name)]


@functools.cache
def _warn_unconfined() -> None:
    log.warning("this kernel has no Landlock: GDAL children run without the file and port sandbox")


def inspect(path: Path, cwd: Path, drivers: Sequence[str]) -> SourceInfo:
    """Describe ``path`` (opened with ``drivers`` only) and choose its layer: the spatial layer with most
    features, first on ties."""
    source = str(path.absolute())
    listing = run_ogrinfo(["-ro", "-q", source], path, cwd, drivers)
    names = [m.group(1) for m in re.finditer(r"^\d+: (.+?)(?: \([^()]*\))?$", listing, re.M)]
    if not names:
        raise NoLayerFound()
    count_flags = ["-nocount"] if len(names) == 1 else []
    summary = run_ogrinfo(["-ro", "-so", "-al", *count_flags, "-noextent", source], path, cwd, drivers)
    driver = re.search(r"using driver `([^']+)'", summary)
    layers = [layer for layer in _parse_layers(summary) if layer.is_spatial]
    if not layers:
        raise NoLayerFound()
    chosen = max(layers, key=lambda layer: (layer.feature_count or 0, -layers.index(layer)))
    return SourceInfo(
        path=path,
        driver=driver.group(1) if driver else "",
        layer=chosen,
        layer_count=len(names),
        drivers=tuple(drivers),
    )


def run_ogrinfo(args: list[str], source: Path, cwd: Path, drivers: Sequence[str]) -> str:
    """``ogrinfo args`` on ``source`` with ``drivers`` only, confined to ``cwd``; its output."""
    try:
        with _confined(source, cwd) as confinement:
            done = subprocess.run(
                ["ogrinfo", *args],
                cwd=cwd,
                env=child_env(drivers=drivers, work=cwd),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=INSPECT_TIMEOUT_SEC,
                **confinement,  # type: ignore[arg-type]
            )
    except subprocess.TimeoutExpired:
        raise ImportTimeout("Inspecting the file took too long") from None
    if done.returncode != 0:
        log.info("ogrinfo could not open the source: %s", _first_error_line(done.stderr))
        raise UnsupportedFormat()
    return done.stdout


def _parse_layers(summary: str) -> list[LayerInfo]:
    blocks = re.split(r"^Layer name: ", summary, flags=re.M)[1:]
    return [_parse_layer(block) for block in blocks]


def _parse_layer(block: str) -> LayerInfo:
    lines = block.splitlines()
    geometry = re.search(r"^Geometry: (.+)$", block, re.M)
    count = re.search(r"^Feature Count: (-?\d+)$", block, re.M)
    srs = re.search(r"^Layer SRS WKT:\n(.+)$", block, re.M)
    fields = {}
    for line in lines:
        match = _FIELD_LINE.match(line)
        if match and not line.startswith(("Extent:", "Feature Count:", "Geometry:")):
            fields[match.group("name")] = match.group("type")
    return LayerInfo(
        name=lines[0].strip(),
        geometry_type=geometry.group(1).strip() if geometry else "Unknown (any)",
        feature_count=int(count.group(1)) if count and int(count.group(1)) >= 0 else None,
        has_srs=bool(srs and srs.group(1).strip() != "(unknown)"),
        fields=fields,
    )


def load_argv(source: SourceInfo, options: LoadOptions, work: Path) -> list[str]:
    """The ogr2ogr command line (no secrets in it) that loads the chosen layer into the staging table."""
    srs_flag = "-t_srs" if source.layer.has_srs else "-a_srs"
    argv = ["ogr2ogr", "-progress", "-f", OUTPUT_DRIVER, f"PG:{options.conninfo}", str(source.path.absolute())]
    argv += _layer_selection(source, work)
    argv += ["-nln", options.table, "-lco", f"SCHEMA={options.schema}", "-lco", "UNLOGGED=ON"]
    argv += ["-lco", "SPATIAL_INDEX=NONE", "-lco", "GEOMETRY_NAME=wkb_geometry", "-lco", "FID=ogc_fid"]
    column_types = _numeric_column_types(source.layer)
    if column_types:
        argv += ["-lco", f"COLUMN_TYPES={column_types}"]
    argv += ["-nlt", "PROMOTE_TO_MULTI", "-dim", "XY", srs_flag, "EPSG:4326", "-gt", "65536"]
    argv += ["--config", "PG_USE_COPY", "YES"]
    for key, value in options.config.items():
        argv += ["--config", key, value]
    return argv


def _layer_selection(source: SourceInfo, work: Path) -> list[str]:
    """Arguments choosing the layer: none for a one-layer source, else ``-sql @file`` whose SELECT quotes
    the name (a layer name never stands bare on the command line, where ``-sql ...`` would be an option)."""
    if source.layer_count == 1:
        return []
    name = source.layer.name
    if _UNSAFE_LAYER_NAME.search(name):
        raise UnsupportedFormat("The layer to import has a name with quotes, backslashes or control characters")
    query = work / "layer.sql"
    query.write_text(f'SELECT * FROM "{name}"', encoding="utf-8")
    return ["-sql", f"@{query.absolute()}"]


def _numeric_column_types(layer: LayerInfo) -> str:
    """``COLUMN_TYPES`` making floats and 64-bit integers ``numeric`` at creation (no rewrite later).

    Names that the option's syntax cannot carry are left out; the post-load conversion catches them.
    """
    items = [
        f"{name}=numeric"
        for name, ogr_type in layer.fields.items()
        if ogr_type in _NUMERIC_OGR_TYPES and not re.search(r"[,=\"']", name)
    ]
    return ",".join(items)


def load(
    source: SourceInfo, options: LoadOptions, cwd: Path, on_progress: Callable[[float], None] | None = None
) -> None:
    """Run ogr2ogr; kill it after ``options.timeout_sec``; raise a coded error on failure."""
    secrets = {"PGCLIENTENCODING": "UTF8", **({"PGPASSWORD": options.password} if options.password else {})}
    env = child_env(secrets, drivers=(*source.drivers, OUTPUT_DRIVER), work=cwd)
    argv = load_argv(source, options, cwd)
    with _confined(source.path, cwd, options.connect_ports) as confinement:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **confinement,  # type: ignore[arg-type]
        )
    stderr_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=_read_progress, args=(process, on_progress), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, stderr_chunks), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        returncode = process.wait(timeout=options.timeout_sec)
    except subprocess.TimeoutExpired:
        raise ImportTimeout(f"Loading the layer took more than {options.timeout_sec:g} seconds") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if returncode != 0:
        line = _first_error_line(b"".join(stderr_chunks).decode("utf-8", "replace"))
        log.warning("ogr2ogr failed (exit %s): %s", returncode, line)  # the log keeps the details
        detail = redact_internals(line)
        raise PushingToPostgisProblem(f"Problem during ogr2ogr import to postgis: {detail}"[:500])


def _read_progress(process: subprocess.Popen[bytes], on_progress: Callable[[float], None] | None) -> None:
    """ogr2ogr ``-progress`` prints ``0...10...20...`` on stdout: report each number."""
    assert process.stdout is not None
    digits = b""
    for byte in iter(lambda: process.stdout.read(1), b""):  # type: ignore[union-attr]
        if byte.isdigit():
            digits += byte
            continue
        if digits and on_progress is not None:
            on_progress(float(digits))
        digits = b""
    if digits and on_progress is not None:
        on_progress(float(digits))


def _drain(stream: object, chunks: list[bytes]) -> None:
    total = 0
    for chunk in iter(lambda: stream.read(65536), b""):  # type: ignore[attr-defined]
        if total < 65536:
            chunks.append(chunk)
            total += len(chunk)


def _first_error_line(stderr: str) -> str:
    """GDAL's first error line (for CKAN's users it goes through :func:`redact_internals` first)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "FAILURE"))]
    return (errors or lines or ["no error output"])[0][:300]
