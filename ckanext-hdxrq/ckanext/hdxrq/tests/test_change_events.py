"""create-change-events: the old dataset read before the write, the new one as committed, only for commits."""

from __future__ import annotations

from typing import Any

import ckan.model as model
import pytest
from ckan.lib.search import SearchIndexError
from ckan.tests import factories
from ckan.tests.helpers import call_action

from .conftest import FakeHdxrq

pytestmark = pytest.mark.usefixtures("site")


def as_user(user: dict[str, Any], **context: Any) -> dict[str, Any]:
    return {"user": user["name"], "ignore_auth": False, **context}


def test_create_update_and_delete_send_old_and_new_dataset(hdxrq: FakeHdxrq) -> None:
    user = factories.Sysadmin()
    created = call_action("package_create", as_user(user), name="zones", title="Zones")
    call_action("package_patch", as_user(user), id="zones", title="Zones 2024")
    call_action("package_delete", as_user(user), id="zones")

    create, update, delete = hdxrq.change_events()
    assert create["username"] == update["username"] == delete["username"] == user["name"]
    assert create["old_dataset_dict"] == {}
    assert create["new_dataset_dict"]["id"] == created["id"] and create["new_dataset_dict"]["title"] == "Zones"
    assert update["old_dataset_dict"]["title"] == "Zones" and update["new_dataset_dict"]["title"] == "Zones 2024"
    assert update["old_dataset_dict"] == create["new_dataset_dict"]
    assert delete["old_dataset_dict"]["state"] == "active" and delete["new_dataset_dict"]["state"] == "deleted"
    assert delete["old_dataset_dict"]["title"] == "Zones 2024"


def test_a_resource_write_sends_the_dataset_before_and_after_it(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset()
    resource = call_action("resource_create", package_id=dataset["id"], url="https://x.org/a.csv", name="A")
    call_action("resource_patch", id=resource["id"], url="https://x.org/b.csv")
    call_action("resource_delete", id=resource["id"])

    _, created, patched, deleted = hdxrq.change_events()
    assert created["old_dataset_dict"]["resources"] == []
    assert [r["url"] for r in created["new_dataset_dict"]["resources"]] == ["https://x.org/a.csv"]
    assert [r["url"] for r in patched["old_dataset_dict"]["resources"]] == ["https://x.org/a.csv"]
    assert [r["url"] for r in patched["new_dataset_dict"]["resources"]] == ["https://x.org/b.csv"]
    assert len(deleted["old_dataset_dict"]["resources"]) == 1 and deleted["new_dataset_dict"]["resources"] == []


def test_nothing_is_sent_before_the_commit(hdxrq: FakeHdxrq) -> None:
    context = {"defer_commit": True}
    first = call_action("package_create", dict(context), name="zones", title="Draft")
    second = call_action(
        "package_create", dict(context), name="roads", resources=[{"url": "https://x.org/r.kml", "format": "KML"}]
    )
    assert hdxrq.calls == []

    model.repo.commit()

    assert [event["new_dataset_dict"]["id"] for event in hdxrq.change_events()] == [first["id"], second["id"]]
    assert [call.query["resource_download_url"] for call in hdxrq.add_layer_calls()] == [["https://x.org/r.kml"]]


def test_nothing_is_sent_for_a_rolled_back_write(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(title="Before")
    sent = len(hdxrq.calls)

    call_action("package_create", {"defer_commit": True}, name="never", resources=[{"url": "https://x.org/a.kml"}])
    model.Session.rollback()
    call_action("package_patch", id=dataset["id"], notes="Committed")

    assert len(hdxrq.calls) == sent + 1
    (update,) = hdxrq.change_events()[-1:]
    assert update["new_dataset_dict"]["notes"] == "Committed"
    assert model.Package.get("never") is None


def test_a_write_in_a_rolled_back_savepoint_is_not_sent(hdxrq: FakeHdxrq) -> None:
    call_action("package_create", {"defer_commit": True}, name="outer")
    savepoint = model.Session.begin_nested()
    call_action("package_create", {"defer_commit": True}, name="inner")
    savepoint.rollback()
    model.repo.commit()

    assert [event["new_dataset_dict"]["name"] for event in hdxrq.change_events()] == ["outer"]


def test_an_update_ckan_undoes_itself_sends_nothing(hdxrq: FakeHdxrq) -> None:
    # CKAN 2.12's package_update with defer_commit rolls its own savepoint back: the change never happens
    dataset = factories.Dataset(title="Kept")
    sent = len(hdxrq.calls)

    call_action("package_patch", {"defer_commit": True}, id=dataset["id"], title="Undone")
    model.repo.commit()

    assert len(hdxrq.calls) == sent
    assert call_action("package_show", id=dataset["id"])["title"] == "Kept"


def test_a_save_that_fails_after_the_hooks_sends_nothing(
    hdxrq: FakeHdxrq, ckan_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = factories.Dataset(title="Before")
    sent = len(hdxrq.calls)
    # the search index is written after the after_dataset_* hooks and before COMMIT: make it fail
    monkeypatch.setitem(ckan_config, "solr_url", "http://127.0.0.1:9/solr/ckan")

    with pytest.raises(SearchIndexError):
        call_action("package_create", name="lost", resources=[{"url": "https://x.org/a.geojson", "format": "GeoJSON"}])
    with pytest.raises(SearchIndexError):
        call_action("package_patch", id=dataset["id"], title="Lost")
    model.Session.remove()  # what CKAN does at the end of every request

    assert len(hdxrq.calls) == sent
    assert model.Package.get("lost") is None
    assert model.Package.get(dataset["id"]).title == "Before"


@pytest.mark.ckan_config("ckanext.hdxrq.change_events", "false")
def test_change_events_can_be_switched_off(hdxrq: FakeHdxrq) -> None:
    factories.Dataset(resources=[{"url": "https://x.org/a.geojson", "format": "GeoJSON"}])
    assert hdxrq.change_events() == []
    assert len(hdxrq.add_layer_calls()) == 1
