"""File-structure check helpers (CONTRACTS.md §2.6): ask the HXL proxy, diff the sheets, build CKAN's value."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from .detect import diff_sheets, last_success, proxy_sheets
from .errors import HxlProxyError, HxlProxyTimeout

log = logging.getLogger(__name__)

SUCCESS_MESSAGE = "File structure check completed"
MAX_PROXY_BYTES = 20 * 1024 * 1024


def fetch_source_info(url: str, *, timeout: float, user_agent: str) -> dict[str, Any]:
    """GET the HXL proxy's source-info answer; raise :class:`HxlProxyError` unless it is a JSON object."""
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    try:
        with httpx.Client(timeout=limits, follow_redirects=True, headers={"User-Agent": user_agent}) as http:
            response = http.get(url)
    except httpx.TimeoutException:
        raise HxlProxyTimeout(f"The HXL proxy did not answer within {timeout:g} s") from None
    except httpx.HTTPError as error:
        raise HxlProxyError(f"The HXL proxy could not be reached ({type(error).__name__})") from None
    if not response.is_success:
        raise HxlProxyError(f"The HXL proxy answered HTTP {response.status_code}")
    if len(response.content) > MAX_PROXY_BYTES:
        raise HxlProxyError("The HXL proxy answer is too large")
    try:
        payload = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown type").split(";")[0]
        raise HxlProxyError(f"The HXL proxy answered {kind}, not JSON") from None
    if not isinstance(payload, dict):
        raise HxlProxyError("The HXL proxy answered JSON that is not an object")
    if not isinstance(payload.get("sheets", []), list):
        raise HxlProxyError("The HXL proxy answer has no list of sheets")
    return payload


def sheet_changes(history: Any, proxy_response: Mapping[str, Any], resource_id: str | None = None) -> list[dict]:
    """The proxy's sheets against those of the history's last success item, in CKAN's shape."""
    previous = proxy_sheets(last_success(history, resource_id))
    return [
        {
            "name": change.sheet_id,
            "event_type": change.event_type.value,
            "changed_fields": change.changed_fields if change.changed_fields is not None else "",
        }
        for change in diff_sheets(previous, proxy_sheets(proxy_response))
    ]


def success_value(history: Any, proxy_response: dict[str, Any], timestamp: str, resource_id: str) -> dict[str, Any]:
    """The ``value`` of the callback when the proxy described the file."""
    return {
        "state": "success",
        "message": SUCCESS_MESSAGE,
        "timestamp": timestamp,
        "sheet_changes": sheet_changes(history, proxy_response, resource_id),
        "hxl_proxy_response": proxy_response,
    }


def error_value(error: HxlProxyError, timestamp: str) -> dict[str, Any]:
    """The ``value`` of the callback when the proxy failed: the resource must not stay "processing"."""
    return {
        "state": "error",
        "message": f"File structure check failed: {error.message}",
        "timestamp": timestamp,
        "error_type": error.error_type,
        "sheet_changes": [],
        "hxl_proxy_response": None,
    }


def callback_body(dataset_id: str, resource_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """The body of ``hdx_fs_check_resource_revise``."""
    return {"id": resource_id, "package_id": dataset_id, "key": "fs_check_info", "value": value}
