"""HTTP endpoints of the analyticsapi slice."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("analyticsapi", __name__)
