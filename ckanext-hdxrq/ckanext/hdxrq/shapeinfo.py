"""A resource's ``shape_info``: the history of hdxrq's geopreview results, and what the map needs from it.

hdxrq's callback brings one result (a JSON string of an object with ``state``, ``message``, ``layer_id``
and, on success, ``bounding_box`` and ``layer_fields``). The resource keeps the last
:data:`HISTORY_LENGTH` of them, each with the time CKAN received it, as a JSON string of a list; the map
is shown only when the newest one succeeded.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

HISTORY_LENGTH = 10
SUCCESS = "success"
STATES = frozenset({"success", "failure", "processing"})

MAP_FIELD_TYPES = frozenset({"character varying", "integer", "numeric"})
"""Attribute types the map asks the tile server for (as the layer's ``layer_fields`` spell them)."""
GEOMETRY_COLUMN = "wkb_geometry"
MAX_ZOOM = 22

_LAYER_ID = re.compile(r"[a-z0-9_]{1,63}")
_NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_BOX = re.compile(rf"BOX\(\s*{_NUMBER}\s+{_NUMBER}\s*,\s*{_NUMBER}\s+{_NUMBER}\s*\)")


def parse_result(value: Any) -> dict[str, Any]:
    """One result as hdxrq sends it (a JSON string, or an object); ValueError when it is not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("shape_info is not JSON") from None
    if not isinstance(value, dict) or value.get("state") not in STATES:
        raise ValueError(f"shape_info must be an object whose state is one of {', '.join(sorted(STATES))}")
    return value


def history(value: Any) -> list[dict[str, Any]]:
    """The results a resource keeps, oldest first (a missing or unreadable value is no history)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def appended(value: Any, result: dict[str, Any], now: datetime.datetime) -> list[dict[str, Any]]:
    """The history with ``result`` (stamped with ``now``) added, cut to the last :data:`HISTORY_LENGTH`."""
    stamped = {**result, "timestamp": now.replace(tzinfo=None).isoformat()}
    return [*history(value), stamped][-HISTORY_LENGTH:]


def latest(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The newest result of a resource, if any."""
    items = history(resource.get("shape_info"))
    return items[-1] if items else None


def bounds(box: Any) -> list[float] | None:
    """``BOX(xmin ymin,xmax ymax)`` (PostGIS ``ST_Extent``) as ``[west, south, east, north]``."""
    match = _BOX.fullmatch(str(box or "").strip())
    return [float(number) for number in match.groups()] if match else None


def map_config(resource: dict[str, Any], service_url: str) -> dict[str, Any] | None:
    """What hdxrq's map script needs to show the resource's layer, or None while there is no layer to show."""
    result = latest(resource)
    if not result or result.get("state") != SUCCESS:
        return None
    layer_id = str(result.get("layer_id") or "")
    if not _LAYER_ID.fullmatch(layer_id):
        return None
    fields = [
        str(field["field_name"])
        for field in result.get("layer_fields") or []
        if isinstance(field, dict) and field.get("data_type") in MAP_FIELD_TYPES and field.get("field_name")
    ]
    return {
        "layerId": layer_id,
        "geometryType": None,
        "bounds": bounds(result.get("bounding_box")),
        "geom": GEOMETRY_COLUMN,
        "fields": fields,
        "maxZoom": MAX_ZOOM,
        "basemapStyleUrl": None,
        "serviceUrl": service_url,
    }
