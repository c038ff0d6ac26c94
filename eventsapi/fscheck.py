"""File-structure check helpers (CONTRACTS.md §2.6): ask the HXL proxy, diff the sheets, build CKAN's value."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from core.errors import HdxError
from core.guarded_http import (
    DestinationRefused,
    GuardedClient,
    OutboundError,
    OutboundPolicy,
    OutboundTimeout,
    Resolver,
    ResponseTooLarge,
    system_resolver,
)

from .detect import diff_sheets, last_success, proxy_sheets
from .errors import HxlProxyError, HxlProxyRefused, HxlProxyTimeout

if TYPE_CHECKING:
    from core.settings import CoreSettings

log = logging.getLogger(__name__)

SUCCESS_MESSAGE = "File structure check completed"
MAX_PROXY_BYTES = 20 * 1024 * 1024


def fetch_source_info(url: str, settings: CoreSettings, *, resolver: Resolver = system_resolver) -> dict[str, Any]:
    """GET the HXL proxy's source-info answer through the guarded client (the URL comes from a request:
    private addresses are refused, redirects checked, the body capped at 20 MB while streaming); raise
    :class:`HxlProxyError` unless the answer is a JSON object (NaN and Infinity are not JSON)."""
    timeout = float(settings.downloads.timeout_sec)
    policy = OutboundPolicy.from_settings(settings, max_bytes=MAX_PROXY_BYTES, total_timeout_sec=timeout)
    try:
        with GuardedClient(policy, resolver=resolver).get(url) as fetched:
            if not 200 <= fetched.status_code < 300:
                raise HxlProxyError(f"The HXL proxy answered HTTP {fetched.status_code}")
            kind = fetched.headers.get("content-type", "unknown type").split(";")[0]
            body = fetched.read()
    except DestinationRefused as error:
        raise HxlProxyRefused(f"The HXL proxy URL is not allowed: {error.message}") from None
    except OutboundTimeout:
        raise HxlProxyTimeout(f"The HXL proxy did not answer within {timeout:g} s") from None
    except ResponseTooLarge:
        raise HxlProxyError("The HXL proxy answer is too large") from None
    except OutboundError as error:
        raise HxlProxyError(f"The HXL proxy could not be reached ({error.message})") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
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


def error_value(error: HdxError, timestamp: str) -> dict[str, Any]:
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
