"""The API page (``/docs``) reads well: operations grouped by slice, written summaries, Markdown descriptions."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from app.slices import SLICES
from core.openapi import SERVICE_TAG

GENERATED_SUMMARY = re.compile(r"^\S+ <[A-Z]+>$")  # what spectree writes for a view without a docstring
RESTRUCTURED_TEXT = re.compile(r"``|:(?:mod|func|class|meth|attr|data):`")


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_operation_has_its_slice_as_tag_a_written_summary_and_markdown(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    tags = {module.__name__ for module in SLICES} | {SERVICE_TAG}
    listed = operations(document)
    assert len(listed) >= 30

    for where, operation in listed:
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, where
        summary, description = operation["summary"], operation.get("description", "")
        assert summary and not GENERATED_SUMMARY.match(summary), where
        assert "`" not in summary and "\n" not in summary, where  # Swagger UI shows summaries as plain text
        assert not RESTRUCTURED_TEXT.search(summary + description), where

    used = {operation["tags"][0] for _, operation in listed}
    assert [tag["name"] for tag in document["tags"]] == sorted(used)
    assert all(tag["description"] and not RESTRUCTURED_TEXT.search(tag["description"]) for tag in document["tags"])


def test_operations_are_tagged_by_the_package_of_their_view(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths["/api/add-layer/dataset/{dataset_id}/resource/{resource_id}"]["get"]["tags"] == ["importapi"]
    assert paths["/api/send-analytics"]["post"]["tags"] == ["analyticsapi"]
    assert paths["/api/create-change-events"]["post"]["tags"] == ["eventsapi"]
    assert paths["/api/scheduler/add_job"]["post"]["tags"] == ["scheduler"]
    assert paths["/gis/{layer_id}/{z}/{x}/{y}.pbf"]["get"]["tags"] == ["tiles"]
    assert paths["/processes/{process_id}/execution"]["post"]["tags"] == ["processes"]
    assert paths["/version"]["get"]["tags"] == paths["/monitor/workers.json"]["get"]["tags"] == [SERVICE_TAG]


def test_descriptions_keep_their_markdown_and_leave_developer_notes_out(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").get_json()["paths"]["/api/send-analytics"]["post"]
    assert "\n* Body: `event_name`" in operation["description"]  # a list item on its own line
    assert "express" not in operation["description"]  # the notes after the docstring's form feed
