"""Errors of the tiles slice, rendered as JSON by the app's error handler.

core.errors.NotFound        not-found
└── UnknownLayer            unknown-layer        (HTTP 404)
core.errors.BadRequest      bad-request
├── UnknownColumn           unknown-column       (HTTP 400)
└── TileOutOfRange          tile-out-of-range    (HTTP 400)
core.errors.ServiceUnavailable
└── AssetsMissing           assets-missing       (HTTP 503)
"""

from __future__ import annotations

from core.errors import BadRequest, NotFound, ServiceUnavailable


class UnknownLayer(NotFound):
    error_type = "unknown-layer"
    user_message = "No such layer"


class UnknownColumn(BadRequest):
    error_type = "unknown-column"
    user_message = "The layer has no such column"


class TileOutOfRange(BadRequest):
    error_type = "tile-out-of-range"
    user_message = "z/x/y is not a tile of this service"


class AssetsMissing(ServiceUnavailable):
    error_type = "assets-missing"
    user_message = "The map library is not installed (run ./dev.sh up, which runs npm install)"
