"""The three calls CKAN makes to hdxrq (add-layer, delete-one-layer, create-change-events), with timeouts.

Wire formats are hdxrq's contract with CKAN: ``GET /api/add-layer/dataset/<id>/resource/<id>`` with the
download URL and its ``url_type`` as query parameters (answer ``state: processing``),
``POST /api/delete-one-layer/<resource id>`` (answer ``state: started``, also when there was no layer), and
``POST /api/create-change-events`` with ``username``, ``old_dataset_dict`` and ``new_dataset_dict``
(answer ``state: success``). Anything else, including no answer in time, raises :class:`HdxrqError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from .settings import ExtensionSettings

USER_AGENT = "ckanext-hdxrq/0.1.0"
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


class HdxrqError(Exception):
    """hdxrq did not take a notification: an error status or a refusal."""

    retryable = False
    """Whether the same notification would likely be taken a moment later (it is then parked)."""


class HdxrqUnavailable(HdxrqError):
    """hdxrq, or the gateway in front of it, said it cannot answer now (502, 503, 504)."""

    retryable = True


class HdxrqUnreachable(HdxrqUnavailable):
    """No answer at all: hdxrq is down, unreachable or slower than the timeouts."""


class HdxrqClient:
    """Calls hdxrq's notification endpoints; ``session`` is the seam tests and connection reuse use."""

    def __init__(self, settings: ExtensionSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if settings.token:
            self.session.headers["Authorization"] = f"Bearer {settings.token}"

    def add_layer(self, dataset_id: str, resource_id: str, download_url: str, url_type: str) -> dict[str, Any]:
        """Ask hdxrq to import a resource's file into PostGIS (it answers at once and works in the background)."""
        path = f"/api/add-layer/dataset/{quote(dataset_id, safe='')}/resource/{quote(resource_id, safe='')}"
        params = {"resource_download_url": download_url, "url_type": url_type}
        return self._call("GET", path, "processing", params=params)

    def delete_layer(self, resource_id: str) -> dict[str, Any]:
        """Ask hdxrq to drop a resource's layer, so its tiles stop being served."""
        return self._call("POST", f"/api/delete-one-layer/{quote(resource_id, safe='')}", "started")

    def create_change_events(self, username: str | None, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Hand hdxrq a dataset's versions before and after a write (``old`` is ``{}`` for a new dataset)."""
        body = {"username": username, "old_dataset_dict": old, "new_dataset_dict": new}
        return self._call("POST", "/api/create-change-events", "success", json=body)

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, accepted_state: str, **kwargs: Any) -> dict[str, Any]:
        timeout = (self.settings.connect_timeout, self.settings.timeout)
        try:
            response = self.session.request(method, self.settings.url + path, timeout=timeout, **kwargs)
        except requests.RequestException as error:
            raise HdxrqUnreachable(f"{type(error).__name__}: {error}") from None
        if response.status_code in UNAVAILABLE_STATUSES:
            raise HdxrqUnavailable(f"HTTP {response.status_code} from {path}")
        if response.status_code >= 300:
            raise HdxrqError(f"HTTP {response.status_code} from {path}")
        try:
            answer = response.json()
        except ValueError:
            raise HdxrqError(f"{path} answered something that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("state") != accepted_state:
            detail = answer.get("message") if isinstance(answer, dict) else None
            raise HdxrqError(f"{path} refused: {detail or answer!r}")
        return answer
