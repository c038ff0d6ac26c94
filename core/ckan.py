"""The CKAN action API client: every call to CKAN goes through here.

One attempt per call; durable retries are the caller's (rq ``Retry`` on the job, from :mod:`core.retry`),
so a worker restart cannot lose them. :class:`~core.errors.CkanUnavailable` marks what the one retry
policy calls worth retrying; every other failure is :class:`~core.errors.CkanError`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx

from .errors import CkanError, CkanUnavailable, ConfigurationError
from .retry import RETRYABLE_ERRORS, retryable_status

if TYPE_CHECKING:
    from pydantic import SecretStr

    from .settings import CoreSettings

log = logging.getLogger(__name__)


class CkanClient:
    """Calls ``{CKAN_API_BASE_URL}/{action}`` with the service's User-Agent and a token."""

    def __init__(
        self,
        base_url: str | None,
        *,
        user_agent: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": user_agent},
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: CoreSettings, transport: httpx.BaseTransport | None = None) -> CkanClient:
        return cls(
            settings.ckan.api_base_url,
            user_agent=settings.ckan.user_agent,
            timeout=settings.ckan.timeout_sec,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def action_url(self, action: str) -> str:
        if not self.base_url:
            raise ConfigurationError("CKAN_API_BASE_URL is not set")
        return f"{self.base_url}/{action}"

    def call(
        self,
        action: str,
        *,
        token: SecretStr | None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        """Call an action and return CKAN's response; raise on transport errors and retryable statuses."""
        headers = {"Authorization": token.get_secret_value()} if token else {}
        try:
            if method.upper() == "POST":
                response = self._http.post(self.action_url(action), json=body or {}, headers=headers)
            else:
                response = self._http.get(self.action_url(action), params=params, headers=headers)
        except RETRYABLE_ERRORS as error:
            raise CkanUnavailable(f"CKAN {action}: {type(error).__name__}") from None
        except httpx.HTTPError as error:
            raise CkanError(f"CKAN {action}: {type(error).__name__}") from None
        if retryable_status(response.status_code):
            raise CkanUnavailable(f"CKAN {action}: HTTP {response.status_code}", status=response.status_code)
        return response

    def action(self, action: str, *, token: SecretStr | None, **call: Any) -> Any:
        """Call an action that must succeed and return its ``result``."""
        response = self.call(action, token=token, **call)
        try:
            payload = response.json()
        except ValueError:
            raise CkanUnavailable(f"CKAN {action}: HTTP {response.status_code}, not JSON") from None
        if not response.is_success or not isinstance(payload, dict) or payload.get("success") is False:
            raise CkanError(f"CKAN {action}: HTTP {response.status_code}", status=response.status_code)
        return payload.get("result")
