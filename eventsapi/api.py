"""HTTP endpoints of the eventsapi slice."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("eventsapi", __name__)
