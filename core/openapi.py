"""The OpenAPI 3 document of the whole API (``/openapi.json``) and its interactive page (``/docs``).

The document is generated from the code by spectree: every route is listed (path parameters included),
and views that declare their bodies with :func:`document` get request and response schemas from the same
pydantic models. ``document`` never validates (each endpoint keeps its contract's own error shapes).
The page is Swagger UI from the npm package ``swagger-ui-dist``, served by us (no CDN).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from spectree import SpecTree

from .version import __version__

F = TypeVar("F", bound=Callable[..., Any])

SWAGGER_UI = Path(__file__).resolve().parent.parent / "node_modules" / "swagger-ui-dist"
HIDDEN_PREFIXES = ("/docs", "/preview/static", "/preview/maplibre")
DESCRIPTION = (
    "hdxrq answers CKAN's notifications (geopreview imports, analytics, change events, file-structure "
    "checks, scheduled calls), serves vector tiles of imported layers, and exposes its jobs as "
    "OGC API - Processes. Admin endpoints need `Authorization: Bearer <token>`."
)

_spec = SpecTree(
    "flask",
    mode="greedy",
    title="hdxrq",
    version=__version__,
    description=DESCRIPTION,
    annotations=False,
    path="openapi-internal",
    security_schemes=[],
)


def document(**kwargs: Any) -> Callable[[F], F]:
    """Describe a view's request and responses for the OpenAPI document (no validation).

    Takes spectree's ``validate`` arguments: ``json=Model``, ``query=Model``, ``resp=Response(HTTP_200=Model)``,
    ``tags=[...]``.
    """
    return _spec.validate(skip_validation=True, **kwargs)


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes (call inside an app context)."""
    spec = _spec._generate_spec()
    monitor = app.extensions["hdx"].settings.monitor_url.rstrip("/") + "/"
    paths = {
        path: operations
        for path, operations in spec["paths"].items()
        if not path.startswith(HIDDEN_PREFIXES) and not (path.startswith(monitor) and path != monitor + "workers.json")
    }
    for operations in paths.values():
        for operation in operations.values():
            if not operation.get("responses"):
                operation["responses"] = {"default": {"description": "JSON answer (see the description)"}}
    spec["paths"] = dict(sorted(paths.items()))
    return spec


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This API's OpenAPI 3 document."""
    response = jsonify(openapi_document(current_app._get_current_object()))  # type: ignore[attr-defined]
    response.mimetype = "application/vnd.oai.openapi+json"
    return response


@bp.get("/docs")
def docs() -> Response:
    """Interactive documentation (Swagger UI)."""
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI, filename, max_age=3600)


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>hdxrq API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
