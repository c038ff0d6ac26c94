"""Mixpanel delivery through the official ``mixpanel`` library, in batches to ``/import``.

Why ``/import`` and not ``/track``: both take up to 2000 events a request, but ``/track`` refuses events
older than five days, and buffered events can be older than that after an outage or a dead-letter replay.
``/import`` takes any event time (we send ``mixpanel_meta.time``) and authenticates with the project token
as the basic-auth user name, which is all CKAN gives us (``mixpanel_token`` in each payload). Events of
different tokens (projects) go in separate requests. ``$insert_id`` comes from the request
(:func:`analyticsapi.events.insert_id`), so a batch sent twice is counted once.

The library formats each event (``Mixpanel.import_data`` with a collecting consumer: token, distinct_id,
time, $insert_id, mp_lib, $lib_version) and sends the batch (``Consumer.send("imports", ...)``). Its own
retries are off: retries are durable and ours (:mod:`analyticsapi.drain`, :mod:`core.retry`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import requests
from mixpanel import Consumer, Mixpanel, MixpanelException

from core.retry import is_retryable

from .errors import DeliveryError, RejectedDelivery, RetryableDelivery, delivery_error_for_status

if TYPE_CHECKING:
    from .buffer import Entry
    from .settings import AnalyticsSettings

SINK = "mixpanel"
IMPORT_PATH = "/import"
READ_COUNT = 4000


class _HttpFailure(Exception):
    """Raised by the session hook on an HTTP error status, before the library looks at the body."""

    def __init__(self, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.detail, self.retry_after = status, detail, retry_after


def _raise_for_http_error(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code >= 300:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise _HttpFailure(response.status_code, response.text[:300], retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored: we back off anyway)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class _CollectingConsumer:
    """A library consumer that keeps the formatted messages instead of sending them one by one."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, endpoint: str, json_message: str, api_key: Any = None, api_secret: Any = None) -> None:
        self.messages.append(json_message)


def format_event(message: dict[str, Any]) -> str:
    """The JSON the library builds for one buffered Mixpanel message (what ``/import`` receives)."""
    collector = _CollectingConsumer()
    properties = {**message["properties"], "$insert_id": message["insert_id"]}
    Mixpanel(message["token"], consumer=collector).import_data(
        None, message["distinct_id"], message["event"], message["time"], properties=properties
    )
    return collector.messages[0]


class MixpanelSender:
    """Sends batches of buffered Mixpanel messages, one token per request."""

    sink = SINK

    def __init__(self, config: AnalyticsSettings) -> None:
        self.batch_size = config.mixpanel_batch_size
        # Read wider than one batch so that interleaved projects still fill their batches.
        self.read_count = max(READ_COUNT, config.mixpanel_batch_size)
        self._consumer = Consumer(
            import_url=config.mixpanel_api_url + IMPORT_PATH,
            request_timeout=config.http_timeout_sec,
            retry_limit=0,
        )
        # The library reports every failure as one MixpanelException; the hook keeps the HTTP status.
        self._consumer._session.hooks["response"].append(_raise_for_http_error)

    def configured(self) -> bool:
        """Mixpanel needs no server-side credentials: tokens come with each event."""
        return True

    def batches(self, entries: list[Entry]) -> list[list[Entry]]:
        """Entries grouped by project token, in order, at most ``batch_size`` a request."""
        by_token: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_token[entry.message["token"]].append(entry)
        return [
            group[i : i + self.batch_size] for group in by_token.values() for i in range(0, len(group), self.batch_size)
        ]

    def send(self, messages: list[dict[str, Any]]) -> None:
        """POST one batch (all with the same token); raise a :class:`DeliveryError` saying what to do next."""
        body = "[" + ",".join(format_event(message) for message in messages) + "]"
        try:
            # The project token authenticates /import as the basic-auth user (the library's api_secret slot).
            self._consumer.send("imports", body, api_secret=messages[0]["token"])
        except MixpanelException as error:
            raise _classify(error) from None

    def close(self) -> None:
        """Close the HTTP session."""
        self._consumer._session.close()


def _classify(error: MixpanelException) -> DeliveryError:
    cause = error.__cause__
    if isinstance(cause, _HttpFailure):
        return delivery_error_for_status(cause.status, cause.detail, cause.retry_after)
    if cause is not None:  # the request itself failed (the one retry policy decides what is worth another try)
        cls = RetryableDelivery if is_retryable(cause) else RejectedDelivery
        return cls(f"Mixpanel request failed: {type(cause).__name__}")
    text = str(error)
    if text.startswith("Mixpanel error"):
        return RejectedDelivery(text[:300], status=200)
    return RetryableDelivery(text[:300])  # a 2xx that is not JSON: a proxy's page, try again
