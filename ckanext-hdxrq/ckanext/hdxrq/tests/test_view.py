"""``hdxrq_view``: which resources get the map, and the page CKAN serves in the view's iframe."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from bs4 import BeautifulSoup
from ckan.tests import factories
from ckan.tests.helpers import call_action

from .conftest import FakeHdxrq

pytestmark = pytest.mark.usefixtures("site")

PUBLIC_URL = "https://maps.example.org"
LAYER_FIELDS = [
    {"field_name": "ogc_fid", "data_type": "integer"},
    {"field_name": "adm1_name", "data_type": "character varying"},
    {"field_name": "population", "data_type": "numeric"},
    {"field_name": "surveyed", "data_type": "date"},
    {"field_name": "wkb_geometry", "data_type": "USER-DEFINED"},
]


def record_result(resource_id: str, **result: Any) -> None:
    call_action("hdx_resource_update_metadata", id=resource_id, shape_info=json.dumps(result))


def view_page(app: Any, dataset: dict[str, Any], resource: dict[str, Any]) -> BeautifulSoup:
    (view,) = call_action("resource_view_list", id=resource["id"])
    response = app.get(f"/dataset/{dataset['name']}/resource/{resource['id']}/view/{view['id']}")
    assert response.status_code == 200
    return BeautifulSoup(response.body, "html.parser")


@pytest.fixture
def geo_dataset(hdxrq: FakeHdxrq) -> dict[str, Any]:
    return factories.Dataset(resources=[{"url": "https://x.org/z.geojson", "format": "GeoJSON", "name": "Zones"}])


@pytest.mark.ckan_config("ckan.views.default_views", "hdxrq_view")
def test_geo_resources_get_the_map_by_default_others_do_not(hdxrq: FakeHdxrq) -> None:
    dataset = factories.Dataset(
        resources=[
            {"url": "https://x.org/a.geojson", "format": "GeoJSON"},
            {"url": "https://x.org/b.csv", "format": "CSV"},
        ]
    )
    geo, table = dataset["resources"]
    assert [view["view_type"] for view in call_action("resource_view_list", id=geo["id"])] == ["hdxrq_view"]
    assert call_action("resource_view_list", id=table["id"]) == []


@pytest.mark.ckan_config("ckan.views.default_views", "hdxrq_view")
@pytest.mark.ckan_config("ckanext.hdxrq.public_url", PUBLIC_URL)
def test_the_map_page_loads_the_layer_from_hdxrq(app: Any, geo_dataset: dict[str, Any]) -> None:
    resource = geo_dataset["resources"][0]
    layer_id = "pre_" + resource["id"].replace("-", "_")
    record_result(
        resource["id"],
        state="success",
        message="Import successful",
        layer_id=layer_id,
        bounding_box="BOX(60.5 29.3,74.8898619 38.4906733)",
        layer_fields=LAYER_FIELDS,
    )

    page = view_page(app, geo_dataset, resource)

    config = json.loads(page.find("script", id="preview-config").string)
    assert config["layerId"] == layer_id and config["serviceUrl"] == PUBLIC_URL
    assert config["bounds"] == [60.5, 29.3, 74.8898619, 38.4906733]
    assert config["fields"] == ["ogc_fid", "adm1_name", "population"] and config["geom"] == "wkb_geometry"
    assert page.find(id="map") is not None
    scripts = [tag["src"] for tag in page.find_all("script", src=True)]
    styles = [tag["href"] for tag in page.find_all("link", rel="stylesheet")]
    assert scripts == [f"{PUBLIC_URL}/preview/maplibre/maplibre-gl.js", f"{PUBLIC_URL}/preview/static/preview.js"]
    assert styles == [f"{PUBLIC_URL}/preview/maplibre/maplibre-gl.css", f"{PUBLIC_URL}/preview/static/preview.css"]
    assert not re.search(r"(cdn|unpkg|jsdelivr|googleapis)", str(page))


@pytest.mark.ckan_config("ckan.views.default_views", "hdxrq_view")
def test_the_map_page_says_when_there_is_no_layer_yet_or_it_failed(app: Any, geo_dataset: dict[str, Any]) -> None:
    resource = geo_dataset["resources"][0]
    pending = view_page(app, geo_dataset, resource)
    assert pending.find(attrs={"data-state": "pending"}) and pending.find("script", id="preview-config") is None

    record_result(resource["id"], state="failure", message="No spatial layer in the file", layer_id="pre_x")
    failed = view_page(app, geo_dataset, resource)
    assert "No spatial layer in the file" in failed.find(attrs={"data-state": "failed"}).text

    record_result(resource["id"], state="success", layer_id="pre_x", bounding_box="BOX(1 2,3 4)", layer_fields=[])
    shown = view_page(app, geo_dataset, resource)
    assert json.loads(shown.find("script", id="preview-config").string)["layerId"] == "pre_x"


@pytest.mark.ckan_config("ckan.views.default_views", "hdxrq_view")
def test_a_layer_id_that_is_not_one_is_not_put_in_the_page(app: Any, geo_dataset: dict[str, Any]) -> None:
    resource = geo_dataset["resources"][0]
    record_result(resource["id"], state="success", layer_id='x"</script><script>alert(1)', bounding_box="BOX(1 2,3 4)")
    page = view_page(app, geo_dataset, resource)
    assert page.find("script", id="preview-config") is None and "alert(1)" not in str(page)
