"""Where the preview's front-end files live: MapLibre GL JS from npm, our own script beside this module."""

from __future__ import annotations

from pathlib import Path

MAPLIBRE_DIST = Path(__file__).resolve().parent.parent / "node_modules" / "maplibre-gl" / "dist"
"""The built MapLibre GL JS files that ``npm install`` (run by ./dev.sh from package.json) puts in place."""

MAPLIBRE_FILES = frozenset({"maplibre-gl.js", "maplibre-gl.css", "maplibre-gl.js.map"})
"""The only files of the package the API serves."""

REQUIRED_FILES = ("maplibre-gl.js", "maplibre-gl.css")


def missing_maplibre_files() -> list[str]:
    """The files the preview page needs that are not installed."""
    return [name for name in REQUIRED_FILES if not (MAPLIBRE_DIST / name).is_file()]
