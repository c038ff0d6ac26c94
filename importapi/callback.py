"""The callback to CKAN (CONTRACTS.md §2.2): ``hdx_resource_update_metadata`` with a ``shape_info`` string.

Delivery is its own RQ job with ``Retry`` (the one retry policy, :data:`core.retry.CKAN_CALLBACKS`):
connection errors, timeouts, 408/425/429, 5xx and ``success: false`` are retried with growing intervals
for ``HDXRQ_CALLBACK_RETRY_HOURS``, from Redis, so a worker restart does not lose it. A callback older
than one CKAN already accepted for the same resource is dropped, so a late retry can never make CKAN show
a stale result.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from rq import Retry

from core.errors import CkanError, ConfigurationError, HdxError
from core.retry import CKAN_CALLBACKS

if TYPE_CHECKING:
    from core.ckan import CkanClient
    from core.settings import CoreSettings

log = logging.getLogger(__name__)

ACTION = "hdx_resource_update_metadata"


class CallbackNotAccepted(CkanError):
    """CKAN answered but did not accept the callback (``success`` not true)."""

    error_type = "callback-not-accepted"


def failure_shape_info(layer_id: str, error: HdxError) -> dict[str, Any]:
    """The failure ``shape_info``: the code in both ``error_type`` and ``type``."""
    return {
        "state": "failure",
        "message": error.message,
        "layer_id": layer_id,
        "error_type": error.error_type,
        "error_class": error.error_class,
        "type": error.error_type,
    }


def request_body(resource_id: str, shape_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON body CKAN receives (``shape_info`` is a JSON *string*)."""
    return {"id": resource_id, "shape_info": json.dumps(shape_info), "batch_mode": "KEEP_OLD"}


def retry_policy(settings: CoreSettings) -> Retry:
    """rq ``Retry`` that keeps trying for at least ``HDXRQ_CALLBACK_RETRY_HOURS``; a due retry goes to the
    front of the queue, not behind the imports waiting there."""
    policy = CKAN_CALLBACKS.rq_retry(settings.ckan.callback_retry_hours * 3600)
    policy.enqueue_at_front = True
    return policy


def deliver(ckan: CkanClient, settings: CoreSettings, resource_id: str, shape_info: dict[str, Any]) -> None:
    """POST the callback once; raise :class:`~core.errors.CkanError` subclasses when CKAN did not take it."""
    if settings.ckan.gis_api_key is None:
        raise ConfigurationError("HDX_GIS_API_KEY is not set")
    response = ckan.call(ACTION, token=settings.ckan.gis_api_key, body=request_body(resource_id, shape_info))
    try:
        accepted = response.json().get("success") is True
    except (ValueError, AttributeError):
        accepted = False
    if not accepted:
        raise CallbackNotAccepted(f"CKAN {ACTION}: HTTP {response.status_code}, not accepted")
