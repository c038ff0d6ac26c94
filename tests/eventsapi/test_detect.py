"""The detector as pure functions: rules of CONTRACTS.md §3.3/§3.4, properties, robustness."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsapi.detect import APPROVED_VOCABULARY_ID, detect_events, diff_sheets
from eventsapi.display import dataset_date_display, display_value, markdown_plain_text
from tests.eventsapi.helpers import CASES, assert_matches_expected, load_case

T = "2024-10-07T14:02:16.123456"


def dataset(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "dataset",
        "id": "ds-1",
        "name": "ds",
        "title": "DS",
        "state": "active",
        "organization": {"id": "org-1", "name": "org", "title": "Org"},
        "resources": [],
    }
    return base | fields


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in events]


def sheets_history(*sheet_lists: list[dict[str, Any]]) -> str:
    items: list[dict[str, Any]] = [{"state": "processing"}]
    items += [{"state": "success", "hxl_proxy_response": {"sheets": sheets}} for sheets in sheet_lists]
    return json.dumps(items)


# --- the examples ---


@pytest.mark.parametrize("number", CASES)
def test_example_cases(number: str) -> None:
    old, new, expected = load_case(number)
    events = detect_events(old, new, expected["request"]["body"]["username"], T)
    assert_matches_expected(events, expected["expected_events"])


# --- rules ---


def test_deleted_dataset_gives_only_dataset_deleted() -> None:
    old = dataset(resources=[{"id": "r1", "name": "a"}])
    new = dataset(state="deleted", resources=[])
    events = detect_events(old, new, "u", T)
    assert types(events) == ["dataset-deleted"]
    assert [c["field"] for c in events[0]["changed_fields"]] == ["state"]


def test_markdown_formatting_only_edit_is_no_change() -> None:
    old = dataset(notes="Some **bold** text\n\n* a list")
    new = dataset(notes="Some *bold* text\n\n- a list")
    assert detect_events(old, new, "u", T) == []


def test_markdown_is_reported_as_plain_text() -> None:
    events = detect_events(dataset(caveats='Say "hi" & <b>bye</b>'), dataset(caveats="plain"), "u", T)
    change = events[0]["changed_fields"][0]
    assert change["old_value"] == "Say &quot;hi&quot; &amp; bye" and change["new_value"] == "plain"


def test_owner_org_comes_from_the_organization_object() -> None:
    old = dataset(owner_org="stale-value")
    new = dataset(owner_org="other", organization={"id": "org-2", "name": "o2", "title": "Org Two"})
    [event] = detect_events(old, new, "u", T)
    [change] = event["changed_fields"]
    assert change == {
        "field": "owner_org",
        "new_value": "org-2",
        "new_display_value": "Org Two",
        "old_value": "org-1",
        "old_display_value": "Org",
    }
    assert (event["org_id"], event["org_name"], event["org_title"]) == ("org-2", "o2", "Org Two")


def test_only_approved_vocabulary_tags_groups_and_comma_separated_sets() -> None:
    tag = {"vocabulary_id": APPROVED_VOCABULARY_ID}
    old = dataset(
        tags=[tag | {"name": "health"}, {"name": "free-tag", "vocabulary_id": None}],
        groups=[{"name": "afg"}],
        field_names="a,b",
        file_types="csv",
        customviz=[{"url": "https://viz/1"}],
    )
    new = dataset(
        tags=[tag | {"name": "food"}, tag | {"name": "aid"}, {"name": "another-free"}],
        groups=[{"name": "afg"}, {"name": "syr"}],
        field_names="b, c",
        file_types="csv",
        customviz=[],
    )
    [event] = detect_events(old, new, "u", T)
    assert types([event]) == ["dataset-metadata-changed"]
    assert event["changed_fields"] == [
        {"field": "customviz", "added_items": [], "removed_items": ["https://viz/1"]},
        {"field": "field_names", "added_items": [" c"], "removed_items": ["a"]},
        {"field": "groups", "added_items": ["syr"], "removed_items": []},
        {"field": "tags", "added_items": ["aid", "food"], "removed_items": ["health"]},
    ]


@pytest.mark.parametrize("field", ["field_names", "file_types"])
def test_an_order_only_change_of_a_comma_separated_field_is_a_scalar_change(field: str) -> None:
    [event] = detect_events(dataset(**{field: "csv,xlsx"}), dataset(**{field: "xlsx,csv"}), "u", T)
    assert event["event_type"] == "dataset-metadata-changed"
    assert event["changed_fields"] == [
        {
            "field": field,
            "new_value": "xlsx,csv",
            "new_display_value": "xlsx,csv",
            "old_value": "csv,xlsx",
            "old_display_value": "csv,xlsx",
        }
    ]


def test_a_set_change_replaces_the_scalar_item_of_its_field_only() -> None:
    old = dataset(field_names="a,b", file_types="csv,xlsx", title="T")
    new = dataset(field_names="b,a", file_types="xlsx,json", title="T2")
    [event] = detect_events(old, new, "u", T)
    fields = {change["field"]: change for change in event["changed_fields"]}
    assert list(fields) == ["field_names", "file_types", "title"]
    assert fields["field_names"]["old_value"] == "a,b" and fields["field_names"]["new_value"] == "b,a"
    assert fields["file_types"] == {"field": "file_types", "added_items": ["json"], "removed_items": ["csv"]}
    assert fields["title"]["new_value"] == "T2"


def test_the_same_comma_separated_value_gives_no_event() -> None:
    assert (
        detect_events(
            dataset(field_names="a,b", file_types="csv"), dataset(field_names="a,b", file_types="csv"), "u", T
        )
        == []
    )


def test_resource_order_is_deterministic() -> None:
    old = dataset(resources=[{"id": "r9", "name": "x"}, {"id": "r2", "name": "y"}, {"id": "c", "last_modified": "1"}])
    new = dataset(
        resources=[{"id": "r7", "name": "n"}, {"id": "c", "last_modified": "2", "format": "CSV"}, {"id": "r1"}]
    )
    events = detect_events(old, new, "u", T)
    assert [(e["event_type"], e["resource_id"]) for e in events] == [
        ("resource-deleted", "r2"),
        ("resource-deleted", "r9"),
        ("resource-created", "r1"),
        ("resource-created", "r7"),
        ("resource-data-changed", "c"),
        ("resource-metadata-changed", "c"),
    ]
    assert events[0]["resource_name"] == "y"
    assert list(events[0])[-2:] == ["resource_name", "resource_id"]


def test_sheet_events_from_the_last_two_successes_of_the_new_history() -> None:
    a = {"name": "A", "nrows": 1, "ncols": 2}
    b = {"name": "B", "nrows": 1}
    old_history = sheets_history([a, b])
    new_history = sheets_history([a, b], [a | {"nrows": 5, "is_hidden": True}, {"name": "C"}])
    old = dataset(resources=[{"id": "r", "name": "f.xlsx", "fs_check_info": old_history}])
    new = dataset(resources=[{"id": "r", "name": "f.xlsx", "fs_check_info": new_history}])

    events = detect_events(old, new, "u", T)

    assert [(e["event_type"], e["sheet_id"]) for e in events] == [
        ("spreadsheet-sheet-created", "C"),
        ("spreadsheet-sheet-deleted", "B"),
        ("spreadsheet-sheet-changed", "A"),
    ]
    assert events[0]["changed_fields"] is None and list(events[0])[-1] == "sheet_id"
    assert events[2]["changed_fields"] == [
        {"field": "nrows", "new_value": 5, "new_display_value": 5, "old_value": 1, "old_display_value": 1}
    ]


def test_unnamed_sheets_are_keyed_by_index() -> None:
    changes = diff_sheets([{"nrows": 1}], [{"nrows": 1}, {"nrows": 3}])
    assert [(c.sheet_id, c.event_type.value) for c in changes] == [("1", "spreadsheet-sheet-created")]


def test_unparseable_history_gives_no_sheet_events_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    old = dataset(resources=[{"id": "r", "fs_check_info": "[]"}])
    new = dataset(resources=[{"id": "r", "fs_check_info": "[{not json"}])
    with caplog.at_level(logging.WARNING, logger="eventsapi.detect"):
        assert detect_events(old, new, "u", T) == []
    assert "fs_check_info is not JSON" in caplog.text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[2000-01-15T00:00:00 TO 2024-08-15T23:59:59]", "January 15, 2000 to August 15, 2024"),
        ("[2019-03-01T00:00:00 TO *]", "March 01, 2019 to *"),
        ("", ""),
        (None, ""),
        ("not a range", "not a range"),
    ],
)
def test_dataset_date_display(value: Any, shown: str) -> None:
    assert dataset_date_display(value) == shown


def test_display_values() -> None:
    assert display_value("data_update_frequency", "-2") == "As needed"
    assert display_value("data_update_frequency", "123") == "123"
    assert display_value("license_id", "hdx-other") == "Other"
    assert display_value("subnational", "0") == "not subnational"
    assert display_value("microdata", True) == "contains microdata"
    assert display_value("title", None) is None
    assert markdown_plain_text(None) == "" and markdown_plain_text("") == ""


# --- robustness ---


@pytest.mark.parametrize(
    "old",
    [None, {}],
)
def test_old_null_or_empty_is_a_creation(old: Any) -> None:
    assert types(detect_events(old, dataset(), "u", T)) == ["dataset-created"]


def test_nulls_and_empty_strings_where_the_old_code_crashed() -> None:
    old = dataset(organization=None, field_names=None, file_types="", groups=None, tags=None, resources=None)
    new = dataset(organization=None, field_names="", file_types=None, groups=[None], tags=[{"name": None}])
    new["resources"] = [{"id": "r", "name": None, "fs_check_info": ""}, "junk", {"no": "id"}]
    events = detect_events(old, new, None, T)
    assert types(events) == ["dataset-metadata-changed", "resource-created"]
    # null and "" differ as values and hold the same (empty) set: scalar items, as for any tracked field.
    assert [(c["field"], c["old_value"], c["new_value"]) for c in events[0]["changed_fields"]] == [
        ("field_names", None, ""),
        ("file_types", "", None),
    ]
    assert events[1]["org_id"] is None and events[1]["initiator_user_name"] is None


def test_both_empty_gives_nothing() -> None:
    assert detect_events({}, {}, "u", T) == [] and detect_events(None, None, "u", T) == []


# --- properties ---

words = st.sampled_from(["", "a", "b", "x y", "**m**", "1", "0"])
scalars = st.one_of(st.none(), st.booleans(), words)
names = st.sampled_from(["a", "b", "c", "d"])


@st.composite
def datasets(draw: st.DrawFn) -> dict[str, Any]:
    tracked = ["title", "notes", "subnational", "caveats", "archived", "license_id", "dataset_date", "maintainer"]
    result = dataset(**{field: draw(scalars) for field in draw(st.lists(st.sampled_from(tracked), unique=True))})
    result["groups"] = [{"name": n} for n in draw(st.lists(names, unique=True))]
    result["tags"] = [{"name": n, "vocabulary_id": APPROVED_VOCABULARY_ID} for n in draw(st.lists(names, unique=True))]
    result["field_names"] = ",".join(draw(st.lists(names, unique=True)))
    result["organization"] = draw(st.sampled_from([None, {"id": "o1", "title": "O1"}, {"id": "o2", "title": "O2"}]))
    sheets = st.lists(st.fixed_dictionaries({"name": names, "nrows": st.integers(0, 3)}), max_size=3)
    resources = st.fixed_dictionaries(
        {
            "id": names,
            "name": words,
            "format": scalars,
            "description": words,
            "last_modified": st.sampled_from(["t1", "t2"]),
            "fs_check_info": st.builds(sheets_history, sheets, sheets),
        }
    )
    result["resources"] = draw(st.lists(resources, unique_by=lambda r: r["id"], max_size=4))
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_identical_dicts_give_no_events(ds: dict[str, Any]) -> None:
    assert detect_events(ds, copy.deepcopy(ds), "u", T) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), datasets())
def test_swapping_old_and_new_swaps_added_and_removed(old: dict[str, Any], new: dict[str, Any]) -> None:
    forward = detect_events(old, new, "u", T)
    backward = detect_events(new, old, "u", T)

    def summary(events: list[dict[str, Any]], swap: bool) -> set[Any]:
        flip = {"resource-created": "resource-deleted", "resource-deleted": "resource-created"}
        items = set()
        for event in events:
            kind = flip.get(event["event_type"], event["event_type"]) if swap else event["event_type"]
            if kind.startswith("resource-"):
                items.add((kind, event["resource_id"]))
            for change in event["changed_fields"] or []:
                if "added_items" in change:
                    added, removed = change["added_items"], change["removed_items"]
                    items.add((change["field"], tuple(removed if swap else added), tuple(added if swap else removed)))
                elif event["event_type"] == "dataset-metadata-changed":
                    a, b = change["new_value"], change["old_value"]
                    items.add((change["field"], repr(b if swap else a), repr(a if swap else b)))
        return items

    assert summary(forward, swap=False) == summary(backward, swap=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), datasets())
def test_inputs_are_never_mutated_and_output_is_deterministic(old: dict[str, Any], new: dict[str, Any]) -> None:
    old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)
    first = detect_events(old, new, "u", T)
    assert old == old_copy and new == new_copy
    assert detect_events(old_copy, new_copy, "u", T) == first
    json.dumps(first)  # always serialisable
