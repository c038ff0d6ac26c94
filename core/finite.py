"""JSON values that stay JSON: NaN and Infinity are refused where values come in.

Python's ``json`` reads ``NaN``, ``Infinity``, ``-Infinity`` and numbers too large for a float (``1e999``)
as floats that no JSON parser downstream accepts: a schedule stored with one fails on every run, an
event forwarded with one breaks its consumers. The API's JSON parser refuses them (:func:`loads`, used by
the app's JSON provider, so ``request.get_json`` treats them as invalid JSON), and the doors check values
that reach them another way (the command line, a stored record) with :func:`ensure_finite`.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .errors import BadRequest

if TYPE_CHECKING:
    from flask import Request


class NonFiniteNumber(BadRequest, ValueError):
    """NaN, Infinity or a number beyond a float's range: not a JSON number. A ``ValueError`` too, so that
    whoever treats invalid JSON as such treats these bodies the same way."""

    error_type = "non-finite-number"
    user_message = "NaN, Infinity and numbers beyond a double's range are not valid JSON"


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} is beyond the range of a JSON number")
    return value


def loads(data: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` refusing NaN, Infinity and out-of-range numbers with :class:`NonFiniteNumber`."""
    kwargs.setdefault("parse_constant", _refuse_constant)
    kwargs.setdefault("parse_float", _finite_float)
    return json.loads(data, **kwargs)


def ensure_finite(value: Any, where: str = "the value") -> None:
    """Raise :class:`NonFiniteNumber` when ``value`` holds a float that is NaN or infinite, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise NonFiniteNumber(f"{where} holds {item!r}, which is not a valid JSON number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def request_json(request: Request) -> Any:
    """The request's JSON body as ``request.get_json(silent=True)`` gives it (None when there is none or it
    is not JSON), except that a body holding NaN or Infinity raises :class:`NonFiniteNumber`."""
    if not request.is_json:
        return None
    try:
        return loads(request.get_data(cache=True))
    except NonFiniteNumber:
        raise
    except (ValueError, RecursionError):
        return None
