"""How changed values are shown: plain text of Markdown fields and human display values (CONTRACTS.md §3.3)."""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import markdown

DISPLAY_VALUES_FILE = Path(__file__).with_name("display_values.json")
"""Labels of ``data_update_frequency`` codes and ``license_id`` values, as HDX shows them."""

MARKDOWN_FIELDS = frozenset({"notes", "license_other", "methodology_other", "description", "caveats"})
"""Fields holding Markdown: compared and reported as their plain-text rendering."""

_TAG = re.compile(r"<[^>]*>")
_DATE_RANGE = re.compile(r"^\[\s*(\S+)\s+TO\s+(\S+)\s*\]$")
_local = threading.local()


@cache
def display_tables() -> dict[str, dict[str, str]]:
    """The lookup tables of ``display_values.json``, read once."""
    with DISPLAY_VALUES_FILE.open(encoding="utf-8") as handle:
        return json.load(handle)  # type: ignore[no-any-return]


def _renderer() -> markdown.Markdown:
    # Building a Markdown instance costs more than rendering a short text: keep one per thread.
    renderer = getattr(_local, "renderer", None)
    if renderer is None:
        renderer = _local.renderer = markdown.Markdown()
    return renderer


def prepare_renderer(_runtime: object = None) -> None:
    """Worker start-up hook: build the renderer (~20 ms) once in the worker, not in every forked job."""
    _renderer()
    display_tables()


@lru_cache(maxsize=4096)
def _plain_text_of(text: str) -> str:
    html = _renderer().reset().convert(text)
    plain = _TAG.sub("", html).rstrip("\n").replace("\n", " ").replace("\r", "").replace('"', "&quot;")
    return plain.strip()


def markdown_plain_text(value: Any) -> str:
    """Markdown rendered as HTML with every tag removed, on one line; missing or empty gives ``""``."""
    if value is None or value == "":
        return ""
    return _plain_text_of(value if isinstance(value, str) else str(value))


def comparable_value(field: str, value: Any) -> Any:
    """The value a field is compared and reported with (plain text for Markdown fields)."""
    return markdown_plain_text(value) if field in MARKDOWN_FIELDS else value


def display_value(field: str, value: Any, organization_title: Any = None) -> Any:
    """The human-readable form of ``value`` (already a comparable value) for ``field``."""
    if field == "owner_org":
        return organization_title
    if field == "subnational":
        return "subnational" if value == "1" else "not subnational"
    if field == "dataset_date":
        return dataset_date_display(value)
    if field in ("data_update_frequency", "license_id"):
        return _lookup(field, value)
    if field == "microdata":
        return "contains microdata" if value else "does not contain microdata"
    return value


def dataset_date_display(value: Any) -> Any:
    """``[2000-01-15T00:00:00 TO 2024-08-15T23:59:59]`` → ``January 15, 2000 to August 15, 2024``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        return value
    match = _DATE_RANGE.match(value.strip())
    if not match:
        return value
    start, end = (_date_side(side) for side in match.groups())
    if start is None or end is None:
        return value
    return f"{start} to {end}"


def _date_side(side: str) -> str | None:
    if side == "*":
        return "*"
    try:
        day = date.fromisoformat(side[:10])
    except ValueError:
        return None
    return day.strftime("%B %d, %Y")


def _lookup(field: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    return display_tables()[field].get(str(value), value)
