"""``hdx_resource_update_metadata``: hdxrq's geopreview results land in the resource's ``shape_info``."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from ckan.logic import NotAuthorized, NotFound, ValidationError
from ckan.tests import factories
from ckan.tests.helpers import call_action

from .conftest import FakeHdxrq

pytestmark = pytest.mark.usefixtures("site")

SUCCESS = {
    "state": "success",
    "message": "Import successful",
    "layer_id": "pre_x",
    "error_type": "None",
    "error_class": "None",
    "bounding_box": "BOX(10 20,12.5 21.5)",
    "layer_fields": [{"field_name": "ogc_fid", "data_type": "integer"}],
}


def callback(resource_id: str, result: dict[str, Any], **context: Any) -> dict[str, Any]:
    """The call hdxrq's worker makes (``shape_info`` is a JSON string)."""
    body = {"id": resource_id, "shape_info": json.dumps(result), "batch_mode": "KEEP_OLD"}
    answer: dict[str, Any] = call_action("hdx_resource_update_metadata", context or None, **body)
    return answer


def history(resource_id: str) -> list[dict[str, Any]]:
    return json.loads(call_action("resource_show", id=resource_id)["shape_info"])


@pytest.fixture
def resource(hdxrq: FakeHdxrq) -> dict[str, Any]:
    dataset = factories.Dataset(resources=[{"url": "https://x.org/z.geojson", "format": "GeoJSON"}])
    return dataset["resources"][0]


def test_results_are_appended_with_the_time_they_arrived(resource: dict[str, Any]) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    answer = callback(resource["id"], {"state": "failure", "message": "No layer", "layer_id": "pre_x"})
    callback(resource["id"], SUCCESS)

    first, second = history(resource["id"])
    assert first["state"] == "failure" and {k: second[k] for k in SUCCESS} == SUCCESS
    assert (
        before
        <= datetime.datetime.fromisoformat(first["timestamp"])
        <= datetime.datetime.fromisoformat(second["timestamp"])
    )
    assert answer["id"] == resource["id"]


def test_the_last_ten_results_are_kept(resource: dict[str, Any]) -> None:
    for number in range(12):
        callback(resource["id"], {**SUCCESS, "message": f"Import {number}"})
    assert [item["message"] for item in history(resource["id"])] == [f"Import {n}" for n in range(2, 12)]


def test_the_callback_itself_tells_hdxrq_nothing(hdxrq: FakeHdxrq, resource: dict[str, Any]) -> None:
    sent = len(hdxrq.calls)
    callback(resource["id"], SUCCESS)
    assert len(hdxrq.calls) == sent


def test_a_result_that_is_not_one_is_refused(resource: dict[str, Any]) -> None:
    not_results = ["not json", json.dumps(["a list"]), json.dumps({"state": "done"}), json.dumps({"message": "x"}), ""]
    for shape_info in not_results:
        with pytest.raises(ValidationError) as refused:
            call_action("hdx_resource_update_metadata", id=resource["id"], shape_info=shape_info)
        assert "shape_info" in refused.value.error_dict, shape_info
    assert "shape_info" not in call_action("resource_show", id=resource["id"])


def test_an_unknown_resource_is_not_found(hdxrq: FakeHdxrq) -> None:
    with pytest.raises(NotFound):
        callback("00000000-0000-0000-0000-000000000000", SUCCESS)


def test_only_those_who_may_edit_the_resource_may_call_it(hdxrq: FakeHdxrq) -> None:
    editor, stranger = factories.User(), factories.User()
    organization = factories.Organization(users=[{"name": editor["name"], "capacity": "editor"}])
    dataset = factories.Dataset(owner_org=organization["id"], resources=[{"url": "https://x.org/a.kml"}])
    resource_id = dataset["resources"][0]["id"]

    with pytest.raises(NotAuthorized):
        callback(resource_id, SUCCESS, user=stranger["name"], ignore_auth=False)
    callback(resource_id, SUCCESS, user=editor["name"], ignore_auth=False)
    assert len(history(resource_id)) == 1


def test_status_is_for_sysadmins(hdxrq: FakeHdxrq) -> None:
    user, sysadmin = factories.User(), factories.Sysadmin()
    with pytest.raises(NotAuthorized):
        call_action("hdxrq_status_show", {"user": user["name"], "ignore_auth": False})
    status = call_action("hdxrq_status_show", {"user": sysadmin["name"], "ignore_auth": False})
    assert status["url"] == hdxrq.url and status["failures"] == {} and "geojson" in status["formats"]
