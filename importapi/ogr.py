"""GDAL's command-line tools as child processes: ``ogrinfo`` to inspect a source, ``ogr2ogr`` to load it.

Both run from argv lists (no shell), in the job's temporary directory, with a minimal environment: the
database password travels in ``PGPASSWORD`` of the child only, never on a command line. A child that
outlives its deadline is killed, and so is one whose parent worker dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImportTimeout, NoLayerFound, PushingToPostgisProblem, UnsupportedFormat

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_SEC = 120
_PASSED_ENV_PREFIXES = ("GDAL_", "PROJ_", "CPL_", "OGR_")
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "HOME")
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


@dataclass(frozen=True)
class LoadOptions:
    """How ogr2ogr writes into PostGIS."""

    conninfo: str
    password: str | None
    schema: str
    table: str
    timeout_sec: float
    config: Mapping[str, str] = field(default_factory=dict)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for GDAL children: no secrets of the worker leak into them."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith(_PASSED_ENV_PREFIXES)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra or {})
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def inspect(path: Path, cwd: Path) -> SourceInfo:
    """Describe ``path`` and choose its layer: the spatial layer with most features, first on ties."""
    listing = _run_ogrinfo(["-ro", "-q", str(path)], cwd)
    names = [m.group(1) for m in re.finditer(r"^\d+: (.+?)(?: \([^()]*\))?$", listing, re.M)]
    if not names:
        raise NoLayerFound()
    count_flags = ["-nocount"] if len(names) == 1 else []
    summary = _run_ogrinfo(["-ro", "-so", *count_flags, "-noextent", str(path), *names], cwd)
    driver = re.search(r"using driver `([^']+)'", summary)
    layers = [layer for layer in _parse_layers(summary) if layer.is_spatial]
    if not layers:
        raise NoLayerFound()
    chosen = max(layers, key=lambda layer: (layer.feature_count or 0, -layers.index(layer)))
    return SourceInfo(path=path, driver=driver.group(1) if driver else "", layer=chosen, layer_count=len(names))


def _run_ogrinfo(args: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(
            ["ogrinfo", *args],
            cwd=cwd,
            env=child_env(),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=INSPECT_TIMEOUT_SEC,
            preexec_fn=_die_with_parent,
        )
    except subprocess.TimeoutExpired:
        raise ImportTimeout("Inspecting the file took too long") from None
    if done.returncode != 0:
        log.info("ogrinfo could not open the source: %s", _first_error(done.stderr))
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


def load_argv(source: SourceInfo, options: LoadOptions) -> list[str]:
    """The ogr2ogr command line (no secrets in it) that loads the chosen layer into the staging table."""
    srs_flag = "-t_srs" if source.layer.has_srs else "-a_srs"
    argv = ["ogr2ogr", "-progress", "-f", "PostgreSQL", f"PG:{options.conninfo}", str(source.path), source.layer.name]
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
    env = child_env({"PGCLIENTENCODING": "UTF8", **({"PGPASSWORD": options.password} if options.password else {})})
    process = subprocess.Popen(
        load_argv(source, options),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent,
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
        detail = _first_error(b"".join(stderr_chunks).decode("utf-8", "replace"))
        log.warning("ogr2ogr failed (exit %s): %s", returncode, detail)
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


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "FAILURE"))]
    chosen = (errors or lines or ["no error output"])[0]
    return re.sub(r"password=\S+", "password=***", chosen)[:300]
