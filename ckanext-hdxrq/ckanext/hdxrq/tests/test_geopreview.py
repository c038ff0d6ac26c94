"""Which writes ask hdxrq for a geopreview import, and the add-layer request they send."""

from __future__ import annotations

from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as toolkit
import pytest
from ckan.tests import factories
from ckan.tests.helpers import call_action

from .conftest import FakeHdxrq

pytestmark = pytest.mark.usefixtures("site")

GEOJSON_URL = "https://data.example.org/files/zones.geojson?version=3&token=a b"


def requested(hdxrq: FakeHdxrq) -> list[tuple[str, str, str]]:
    """(path, resource_download_url, url_type) of every add-layer call so far."""
    return [
        (call.path, call.query["resource_download_url"][0], call.query["url_type"][0])
        for call in hdxrq.add_layer_calls()
    ]


def add_layer_path(dataset: dict[str, Any], resource: dict[str, Any]) -> str:
    return f"/api/add-layer/dataset/{dataset['id']}/resource/{resource['id']}"


def test_resources_created_inside_package_create_are_imported(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(
        resources=[
            {"url": GEOJSON_URL, "format": "GeoJSON"},
            {"url": "https://data.example.org/table.csv", "format": "CSV"},
        ]
    )

    geo = dataset["resources"][0]
    # "&" and " " inside the download URL survive: it travels URL-encoded in the query string
    assert requested(hdxrq) == [(add_layer_path(dataset, geo), GEOJSON_URL, "api")]


def test_a_new_file_is_imported_a_metadata_edit_is_not(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset()
    assert requested(hdxrq) == []

    kml = call_action("resource_create", package_id=dataset["id"], url="https://x.org/roads.kml", format="KML")
    assert len(requested(hdxrq)) == 1

    call_action("resource_patch", id=kml["id"], description="Main roads")
    call_action("package_patch", id=dataset["id"], notes="Roads of the region")
    assert len(requested(hdxrq)) == 1

    call_action("resource_patch", id=kml["id"], url="https://x.org/roads-2024.kml")
    assert requested(hdxrq)[-1] == (add_layer_path(dataset, kml), "https://x.org/roads-2024.kml", "api")

    table = call_action("resource_create", package_id=dataset["id"], url="https://x.org/t.zip", format="ZIP")
    assert len(requested(hdxrq)) == 2
    call_action("resource_patch", id=table["id"], format="Zipped Shapefile")
    assert requested(hdxrq)[-1][0] == add_layer_path(dataset, table)
    assert len(requested(hdxrq)) == 3


def test_an_uploaded_file_is_imported_from_its_download_url(hdxrq: FakeHdxrq, create_with_upload: Any) -> None:
    dataset = factories.Dataset()
    resource = create_with_upload(
        '{"type": "FeatureCollection", "features": []}', "zones.geojson", package_id=dataset["id"], format="GeoJSON"
    )

    download_url = f"http://test.ckan.net/dataset/{dataset['id']}/resource/{resource['id']}/download/zones.geojson"
    assert requested(hdxrq) == [(add_layer_path(dataset, resource), download_url, "upload")]


def test_formats_compare_without_case_spaces_or_punctuation(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(
        resources=[
            {"url": "https://x.org/a", "format": "geo-json"},
            {"url": "https://x.org/b", "format": "GEOPACKAGE"},
            {"url": "https://x.org/c", "format": "zipped shapefile"},
            {"url": "https://x.org/d", "format": "XLSX"},
        ]
    )
    assert sorted(url for _, url, _ in requested(hdxrq)) == ["https://x.org/a", "https://x.org/b", "https://x.org/c"]
    assert len(dataset["resources"]) == 4


@pytest.mark.ckan_config("ckanext.hdxrq.formats", "kml")
def test_only_the_configured_formats_are_imported(hdxrq: FakeHdxrq) -> None:
    factories.Dataset(
        resources=[{"url": "https://x.org/a.geojson", "format": "GeoJSON"}, {"url": "https://x.org/b", "format": "KML"}]
    )
    assert [url for _, url, _ in requested(hdxrq)] == ["https://x.org/b"]


@pytest.mark.ckan_config("ckanext.hdxrq.geopreview", "false")
def test_geopreview_can_be_switched_off(hdxrq: FakeHdxrq) -> None:
    factories.Dataset(resources=[{"url": GEOJSON_URL, "format": "GeoJSON"}])
    assert requested(hdxrq) == []
    assert len(hdxrq.change_events()) == 1


def test_deleting_a_dataset_imports_nothing(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(resources=[{"url": GEOJSON_URL, "format": "GeoJSON"}])
    call_action("package_delete", id=dataset["id"])
    assert len(requested(hdxrq)) == 1


def test_deleting_a_geo_resource_drops_its_layer_and_only_its(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(
        resources=[
            {"url": "https://x.org/a.geojson", "format": "GeoJSON"},
            {"url": "https://x.org/b.kml", "format": "KML"},
            {"url": "https://x.org/c.csv", "format": "CSV"},
        ]
    )
    geojson, kml, table = dataset["resources"]

    call_action("resource_delete", id=table["id"])
    assert hdxrq.dropped_layers() == []

    call_action("resource_delete", id=geojson["id"])
    assert hdxrq.dropped_layers() == [geojson["id"]]
    assert kml["id"] not in hdxrq.dropped_layers()
    assert len(requested(hdxrq)) == 2  # nothing imported again


def test_a_resource_no_longer_in_a_geo_format_loses_its_layer(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(resources=[{"url": "https://x.org/a.geojson", "format": "GeoJSON"}])
    resource = dataset["resources"][0]

    call_action("resource_patch", id=resource["id"], format="CSV")

    assert hdxrq.dropped_layers() == [resource["id"]]


def test_deleting_a_dataset_drops_its_layers_and_restoring_it_imports_them_again(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(
        resources=[
            {"url": "https://x.org/a.geojson", "format": "GeoJSON"},
            {"url": "https://x.org/t.csv", "format": "CSV"},
        ]
    )
    geo = dataset["resources"][0]

    call_action("package_delete", id=dataset["id"])
    assert hdxrq.dropped_layers() == [geo["id"]]

    call_action("package_patch", id=dataset["id"], state="active")
    assert requested(hdxrq)[-1] == (add_layer_path(dataset, geo), "https://x.org/a.geojson", "api")
    assert len(requested(hdxrq)) == 2


def test_purging_a_dataset_drops_its_layers_and_sends_no_events(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(resources=[{"url": "https://x.org/a.kml", "format": "KML"}])
    events_before = len(hdxrq.change_events())

    call_action("dataset_purge", id=dataset["id"])

    assert hdxrq.dropped_layers() == [dataset["resources"][0]["id"]]
    assert len(hdxrq.change_events()) == events_before


def test_a_failed_purge_drops_nothing(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(resources=[{"url": "https://x.org/a.kml", "format": "KML"}])
    someone = factories.User()

    with pytest.raises(toolkit.NotAuthorized):
        call_action("dataset_purge", context={"user": someone["name"], "ignore_auth": False}, id=dataset["id"])
    model.Session.remove()  # the request ends: its session rolls back

    assert hdxrq.dropped_layers() == []
    assert call_action("package_show", id=dataset["id"])["state"] == "active"
