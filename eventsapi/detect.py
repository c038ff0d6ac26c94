"""Change detection: pure functions from two CKAN dataset dicts to the events of CONTRACTS.md §3.

No Redis, no Flask, no clock: the caller passes the event time. Inputs are never mutated. The output order
is deterministic: dataset event, resource-deleted, resource-created, then per common resource
data-changed, metadata-changed, sheet-created, sheet-deleted, sheet-changed; ids sorted within a group,
changed fields sorted by name, list items sorted alphabetically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .display import comparable_value, display_value

log = logging.getLogger(__name__)

EVENT_SOURCE = "ckan"
APPROVED_VOCABULARY_ID = "b891512e-9516-4bf5-962a-7a289772a2a1"
"""HDX's approved tag vocabulary: only its tags are tracked."""

DATASET_FIELDS = (
    "name", "title", "notes", "subnational", "dataset_source", "owner_org", "dataset_date",
    "data_update_frequency", "license_id", "license_other", "methodology", "maintainer", "methodology_other",
    "caveats", "archived", "private", "is_requestdata_type", "dataset_preview", "state", "num_of_rows",
    "field_names", "file_types",
)  # fmt: skip
RESOURCE_FIELDS = ("name", "format", "description", "microdata", "resource_type", "url", "in_hapi", "qa_hapi_report")
SHEET_FIELDS = ("nrows", "ncols", "header_hash", "hashtag_hash", "hxl_header_hash", "name", "has_merged_cells")
COMMA_SEPARATED_FIELDS = ("field_names", "file_types")
"""Tracked fields whose scalar diff item gives way to a set diff item when their comma-separated sets differ."""

Json = dict[str, Any]


class EventType(StrEnum):
    """The event types of CONTRACTS.md §3.2."""

    DATASET_CREATED = "dataset-created"
    DATASET_METADATA_CHANGED = "dataset-metadata-changed"
    DATASET_DELETED = "dataset-deleted"
    RESOURCE_CREATED = "resource-created"
    RESOURCE_DELETED = "resource-deleted"
    RESOURCE_DATA_CHANGED = "resource-data-changed"
    RESOURCE_METADATA_CHANGED = "resource-metadata-changed"
    SHEET_CREATED = "spreadsheet-sheet-created"
    SHEET_DELETED = "spreadsheet-sheet-deleted"
    SHEET_CHANGED = "spreadsheet-sheet-changed"


@dataclass(frozen=True)
class SheetChange:
    """One sheet that appeared, disappeared or changed between two HXL proxy answers."""

    sheet_id: str
    event_type: EventType
    changed_fields: list[Json] | None


# --- entry point ---


def detect_events(old: Any, new: Any, username: Any, event_time: str) -> list[Json]:
    """Every change event for one CKAN write, in the contract's order (empty for non-datasets)."""
    old_dict = old if isinstance(old, Mapping) else {}
    new_dict = new if isinstance(new, Mapping) else {}
    if (new_dict or old_dict).get("type") != "dataset":
        return []
    base = _event_base(old_dict, new_dict, username, event_time)
    if old_dict and new_dict and new_dict.get("state") == "deleted":
        changes = scalar_changes(old_dict, new_dict, DATASET_FIELDS, _org_title(old_dict), _org_title(new_dict))
        return [_event(base, EventType.DATASET_DELETED, changes)]
    events = _dataset_event(base, old_dict, new_dict)
    events += _resource_events(base, _resources(old_dict), _resources(new_dict))
    return events


def _event_base(old: Mapping[str, Any], new: Mapping[str, Any], username: Any, event_time: str) -> Json:
    source = new or old
    organization = _organization(source)
    return {
        "event_time": event_time,
        "event_source": EVENT_SOURCE,
        "initiator_user_name": username,
        "dataset_name": source.get("name"),
        "dataset_title": source.get("title"),
        "dataset_id": source.get("id"),
        "org_id": organization.get("id"),
        "org_name": organization.get("name"),
        "org_title": organization.get("title"),
    }


def _event(base: Json, event_type: EventType, changed_fields: list[Json] | None, **extra: Any) -> Json:
    event = {"event_type": event_type.value, "event_time": base["event_time"]}
    for key in ("event_source", "initiator_user_name", "dataset_name", "dataset_title", "dataset_id"):
        event[key] = base[key]
    event["changed_fields"] = changed_fields
    for key in ("org_id", "org_name", "org_title"):
        event[key] = base[key]
    event.update(extra)
    return event


# --- dataset ---


def _dataset_event(base: Json, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Json]:
    old_title, new_title = _org_title(old), _org_title(new)
    changes = scalar_changes(old, new, DATASET_FIELDS, old_title, new_title)
    if not old:
        changes += list_changes(old, new, ("groups", "tags", "customviz"))
        return [_event(base, EventType.DATASET_CREATED, _by_field(changes))]
    changes = _with_set_diffs(changes, list_changes(old, new, COMMA_SEPARATED_FIELDS))
    changes += list_changes(old, new, ("groups", "tags", "customviz"))
    if not changes:
        return []
    return [_event(base, EventType.DATASET_METADATA_CHANGED, _by_field(changes))]


def _with_set_diffs(scalar_items: list[Json], set_items: list[Json]) -> list[Json]:
    # A set diff replaces the field's scalar item; an order-only change (same set) keeps the scalar item.
    by_field = {item["field"]: item for item in set_items}
    merged = [by_field.pop(item["field"], item) for item in scalar_items]
    return merged + list(by_field.values())


def scalar_changes(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    fields: Iterable[str],
    old_org_title: Any = None,
    new_org_title: Any = None,
) -> list[Json]:
    """Diff items of the fields whose (comparable) values differ, sorted by field name."""
    old_values, new_values = _with_owner_org(old), _with_owner_org(new)
    changes = []
    for field in sorted(set(fields)):
        old_raw, new_raw = old_values.get(field), new_values.get(field)
        if type(old_raw) is type(new_raw) and old_raw == new_raw:
            continue  # unchanged: skip rendering (Markdown of a long description costs ~0.1 s in a fresh job)
        old_value, new_value = comparable_value(field, old_raw), comparable_value(field, new_raw)
        if _same(old_value, new_value):
            continue
        changes.append(
            {
                "field": field,
                "new_value": new_value,
                "new_display_value": display_value(field, new_value, new_org_title),
                "old_value": old_value,
                "old_display_value": display_value(field, old_value, old_org_title),
            }
        )
    return changes


def list_changes(old: Mapping[str, Any], new: Mapping[str, Any], fields: Iterable[str]) -> list[Json]:
    """Added/removed items of list-like fields (groups, tags, customviz, comma-separated sets)."""
    changes = []
    for field in fields:
        old_items, new_items = _list_items(field, old.get(field)), _list_items(field, new.get(field))
        added, removed = sorted(new_items - old_items), sorted(old_items - new_items)
        if added or removed:
            changes.append({"field": field, "added_items": added, "removed_items": removed})
    return changes


def _list_items(field: str, value: Any) -> set[str]:
    if field in COMMA_SEPARATED_FIELDS:
        parts = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
        return {str(part) for part in parts if part not in ("", None)}
    if not isinstance(value, list):
        return set()
    key = "url" if field == "customviz" else "name"
    items = (item for item in value if isinstance(item, Mapping))
    if field == "tags":
        items = (item for item in items if item.get("vocabulary_id") == APPROVED_VOCABULARY_ID)
    return {str(item[key]) for item in items if item.get(key) not in (None, "")}


def _with_owner_org(dataset: Mapping[str, Any]) -> Mapping[str, Any]:
    if not dataset:
        return dataset
    return {**dataset, "owner_org": _organization(dataset).get("id")}


def _organization(dataset: Mapping[str, Any]) -> Mapping[str, Any]:
    organization = dataset.get("organization")
    return organization if isinstance(organization, Mapping) else {}


def _org_title(dataset: Mapping[str, Any]) -> Any:
    return _organization(dataset).get("title")


def _same(a: Any, b: Any) -> bool:
    # JSON true and 1 are different values to a reader even though Python says True == 1.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _by_field(changes: list[Json]) -> list[Json]:
    return sorted(changes, key=lambda change: change["field"])


# --- resources ---


def _resources(dataset: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    resources = dataset.get("resources")
    if not isinstance(resources, list):
        return {}
    by_id: dict[str, Mapping[str, Any]] = {}
    for resource in resources:
        if isinstance(resource, Mapping) and resource.get("id") not in (None, ""):
            by_id.setdefault(str(resource["id"]), resource)
    return by_id


def _resource_events(base: Json, old: dict[str, Mapping[str, Any]], new: dict[str, Mapping[str, Any]]) -> list[Json]:
    events = []
    for resource_id in sorted(old.keys() - new.keys()):
        changes = scalar_changes(old[resource_id], {}, RESOURCE_FIELDS)
        events.append(_resource_event(base, EventType.RESOURCE_DELETED, changes, old[resource_id], resource_id))
    for resource_id in sorted(new.keys() - old.keys()):
        changes = scalar_changes({}, new[resource_id], RESOURCE_FIELDS)
        events.append(_resource_event(base, EventType.RESOURCE_CREATED, changes, new[resource_id], resource_id))
    for resource_id in sorted(old.keys() & new.keys()):
        events += _common_resource_events(base, old[resource_id], new[resource_id], resource_id)
    return events


def _common_resource_events(base: Json, old: Mapping[str, Any], new: Mapping[str, Any], resource_id: str) -> list[Json]:
    events = []
    data_change = scalar_changes(old, new, ("last_modified",))
    if data_change:
        events.append(_resource_event(base, EventType.RESOURCE_DATA_CHANGED, data_change, new, resource_id))
    metadata_changes = scalar_changes(old, new, RESOURCE_FIELDS)
    if metadata_changes:
        events.append(_resource_event(base, EventType.RESOURCE_METADATA_CHANGED, metadata_changes, new, resource_id))
    for change in _resource_sheet_changes(old.get("fs_check_info"), new.get("fs_check_info"), resource_id):
        event = _resource_event(base, change.event_type, change.changed_fields, new, resource_id)
        event["sheet_id"] = change.sheet_id
        events.append(event)
    return events


def _resource_event(
    base: Json, event_type: EventType, changes: list[Json] | None, resource: Mapping[str, Any], resource_id: str
) -> Json:
    return _event(base, event_type, changes, resource_name=resource.get("name"), resource_id=resource_id)


# --- sheets (shared with the file-structure check) ---


def _resource_sheet_changes(old_history: Any, new_history: Any, resource_id: str) -> list[SheetChange]:
    if not new_history or new_history == old_history:
        return []
    items = parse_history(new_history, resource_id)
    successes = [item for item in items if item.get("state") == "success"]
    if len(successes) < 2:
        return []
    return diff_sheets(proxy_sheets(successes[-2]), proxy_sheets(successes[-1]))


def parse_history(history: Any, resource_id: str | None = None) -> list[Mapping[str, Any]]:
    """The items of an ``fs_check_info`` history (a JSON string); ``[]`` (logged) when it does not parse."""
    try:
        items = json.loads(history) if isinstance(history, (str, bytes)) else history
    except ValueError as error:
        log.warning("resource %s: fs_check_info is not JSON (%s); no sheet events", resource_id, error)
        return []
    if not isinstance(items, list):
        log.warning("resource %s: fs_check_info is not a list; no sheet events", resource_id)
        return []
    return [item for item in items if isinstance(item, Mapping)]


def last_success(history: Any, resource_id: str | None = None) -> Mapping[str, Any] | None:
    """The newest ``success`` item of an ``fs_check_info`` history, if any."""
    successes = [item for item in parse_history(history, resource_id) if item.get("state") == "success"]
    return successes[-1] if successes else None


def proxy_sheets(item: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The sheets of an HXL proxy answer stored in a history item (or of the answer itself)."""
    if not isinstance(item, Mapping):
        return []
    response = item.get("hxl_proxy_response", item)
    sheets = response.get("sheets") if isinstance(response, Mapping) else None
    return [sheet for sheet in sheets if isinstance(sheet, Mapping)] if isinstance(sheets, list) else []


def diff_sheets(older: list[Mapping[str, Any]], newer: list[Mapping[str, Any]]) -> list[SheetChange]:
    """Sheets created, deleted and changed between two HXL proxy answers (none unless both have sheets)."""
    if not older or not newer:
        return []
    old_map, new_map = _sheets_by_key(older), _sheets_by_key(newer)
    changes = [SheetChange(key, EventType.SHEET_CREATED, None) for key in sorted(new_map.keys() - old_map.keys())]
    changes += [SheetChange(key, EventType.SHEET_DELETED, None) for key in sorted(old_map.keys() - new_map.keys())]
    for key in sorted(old_map.keys() & new_map.keys()):
        fields = scalar_changes(old_map[key], new_map[key], SHEET_FIELDS)
        if fields:
            changes.append(SheetChange(key, EventType.SHEET_CHANGED, fields))
    return changes


def _sheets_by_key(sheets: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    by_key: dict[str, Mapping[str, Any]] = {}
    for index, sheet in enumerate(sheets):
        name = sheet.get("name")
        by_key.setdefault(str(name) if name not in (None, "") else str(index), sheet)
    return by_key
