"""HTTP endpoints of the importapi slice."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("importapi", __name__)
