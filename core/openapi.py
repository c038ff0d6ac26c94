"""The OpenAPI 3 document of the whole API (``/openapi.json``) and its interactive page (``/docs``).

The document is generated from the code by spectree: every route is listed (path parameters included),
and views that declare their bodies with :func:`document` get request and response schemas from the same
pydantic models. ``document`` never validates (each endpoint keeps its contract's own error shapes).
The page is Swagger UI from the npm package ``swagger-ui-dist``, served by us (no CDN).

What readers see comes from the views themselves: an operation's summary is the first line of its view's
docstring and its description the Markdown after it, up to a form feed (``\\f``: developer notes
follow); its tag is the package of its view (the slice; ``service`` for the service's own endpoints),
described by the first line of that package's docstring.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from spectree import SpecTree

from .version import __version__

F = TypeVar("F", bound=Callable[..., Any])

SWAGGER_UI = Path(__file__).resolve().parent.parent / "node_modules" / "swagger-ui-dist"
HIDDEN_PREFIXES = ("/docs", "/preview/static", "/preview/maplibre")
SERVICE_TAG = "service"
SERVICE_PACKAGES = ("core", "app")
"""Packages whose endpoints belong to the service itself rather than to a slice."""
SERVICE_TAG_DESCRIPTION = "The service itself: version, checks, health, readiness, metrics and workers."
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
    monitor = app.extensions["hdx"].settings.api.monitor_url.rstrip("/") + "/"
    paths = {
        path: operations
        for path, operations in spec["paths"].items()
        if not path.startswith(HIDDEN_PREFIXES) and not (path.startswith(monitor) and path != monitor + "workers.json")
    }
    views = _views_by_operation(app)
    tags: dict[str, str] = {}
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not operation.get("responses"):
                operation["responses"] = {"default": {"description": "JSON answer (see the description)"}}
            view = views.get((path, method))
            if view is not None:
                tag = _describe(operation, view)
                tags.setdefault(tag, _tag_description(tag, view))
    spec["paths"] = dict(sorted(paths.items()))
    spec["tags"] = [{"name": name, "description": tags[name]} for name in sorted(tags)]
    return spec


def _views_by_operation(app: Flask) -> dict[tuple[str, str], Callable[..., Any]]:
    """(OpenAPI path, lower-case method) -> the view function behind it (decorators unwrapped)."""
    views = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            views[(path, method.lower())] = inspect.unwrap(app.view_functions[rule.endpoint])
    return views


def _describe(operation: dict[str, Any], view: Callable[..., Any]) -> str:
    """Set the operation's tag, summary and Markdown description from its view; the tag."""
    package = view.__module__.split(".")[0]
    tag = SERVICE_TAG if package in SERVICE_PACKAGES else package
    docstring = (inspect.getdoc(view) or "").split("\f", 1)[0].strip()
    summary, _, description = docstring.partition("\n\n")
    operation["tags"] = [tag]
    if summary:
        operation["summary"] = " ".join(summary.split())
    operation["description"] = description.strip()
    return tag


def _tag_description(tag: str, view: Callable[..., Any]) -> str:
    if tag == SERVICE_TAG:
        return SERVICE_TAG_DESCRIPTION
    package = sys.modules.get(view.__module__.split(".")[0])
    first_line = ((package.__doc__ if package else None) or tag).strip().splitlines()[0]
    return re.sub(r"(?::\w+:)?``?([^`]+)``?", r"`\1`", first_line)  # reStructuredText literals and roles


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
