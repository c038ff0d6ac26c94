"""HTTP endpoints of the tiles slice: postile-compatible vector tiles (CONTRACTS.md §4) and the map preview."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, send_from_directory
from flask.typing import ResponseReturnValue

from core.checks import Check, register_check

from .assets import MAPLIBRE_DIST, MAPLIBRE_FILES
from .checks import check_preview_assets, check_tile_rendering
from .errors import AssetsMissing
from .service import TileService

bp = Blueprint(
    "tiles", __name__, template_folder="templates", static_folder="static", static_url_path="/preview/static"
)

ASSET_MAX_AGE_SEC = 24 * 3600
POSTILE_TEST_TEXT = "Postile is running"


def init_app(app: Flask) -> None:
    """Create the tile service of this app and register its run-checks entries."""
    app.extensions["hdx.tiles"] = TileService(app.extensions["hdx"])
    register_check(
        app,
        Check("Vector tiles", "database", "Checks PostGIS encodes a Mapbox Vector Tile", check_tile_rendering),
    )
    register_check(
        app,
        Check("Map preview assets", "files", "Checks MapLibre GL JS is installed for /preview", check_preview_assets),
    )


def _service() -> TileService:
    return current_app.extensions["hdx.tiles"]  # type: ignore[no-any-return]


@bp.get("/gis/test")
def postile_test() -> ResponseReturnValue:
    """Liveness text for CKAN's service checker.

    Answers `{"result": "Postile is running"}`.
    """
    return jsonify(result=POSTILE_TEST_TEXT)


@bp.get("/gis/layer-type/<layer_id>")
def layer_type(layer_id: str) -> ResponseReturnValue:
    """The geometry type of a layer.

    Answers `{"result": "ST_MultiPolygon"}` (PostGIS's spelling); 404 for an unknown layer.
    """
    return jsonify(result=_service().layer_type(layer_id))


@bp.get("/gis/<layer_id>/<z>/<x>/<y>.pbf")
def tile(layer_id: str, z: str, x: str, y: str) -> ResponseReturnValue:
    """A vector tile of a layer.

    A Mapbox Vector Tile (`application/x-protobuf`) of layer `layer_id` at `z`/`x`/`y`: its MVT layer is
    named after the layer, and features carry `ogc_fid` as their id.

    * Query: `geom`, the geometry column (`wkb_geometry`), and `fields`, the comma-separated attribute
      columns to include.
    * 404 for an unknown layer, 400 for an unknown column or coordinates outside the zoom level; `ETag` and
      `If-None-Match` give 304 for a tile the client has.
    """
    service = _service()
    result = service.tile(
        layer_id,
        z,
        x,
        y,
        geom=request.args.get("geom"),
        fields=request.args.get("fields"),
        is_current=request.if_none_match.contains,
    )
    response = Response(result.body or b"", status=200 if result.body is not None else 304)
    response.mimetype = "application/x-protobuf"
    response.set_etag(result.etag)
    response.cache_control.public = True
    response.cache_control.max_age = service.config.cache_max_age
    response.headers["Access-Control-Allow-Origin"] = "*"  # CKAN's map fetches tiles from its own origin
    return response


@bp.get("/preview/<layer_id>")
def preview(layer_id: str) -> ResponseReturnValue:
    """A map preview of a layer.

    An HTML page with the layer on a MapLibre map, fitted to its extent, with the attributes of a feature
    in a popup.
    """
    config = _service().preview(layer_id)
    return render_template("tiles/preview.html", config=config)


@bp.get("/preview/maplibre/<path:filename>")
def maplibre_asset(filename: str) -> ResponseReturnValue:
    """MapLibre GL JS from the npm package, served by us (the preview works without internet)."""
    if filename not in MAPLIBRE_FILES:
        return jsonify(error="Not found", error_type="not-found"), 404
    if not (MAPLIBRE_DIST / filename).is_file():
        raise AssetsMissing()
    return send_from_directory(MAPLIBRE_DIST, filename, max_age=ASSET_MAX_AGE_SEC)
