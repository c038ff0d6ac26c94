"""HTTP endpoints of the scheduler slice."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("scheduler", __name__)
