"""GA4 delivery through the Measurement Protocol, and the mapping from CKAN's ``ga_meta``.

CKAN still sends Universal Analytics hit parameters (``ec``, ``ea``, ``el``, ``cd1``...). GA4 takes named
events with params, one ``client_id`` a request and at most 25 events a request:

==========  ==========================================================
ga_meta     GA4 Measurement Protocol
==========  ==========================================================
``ec, ea``  event ``name``: ``<ec>_<ea>``, lower case, non-alphanumerics as ``_``, 40 characters at most
            (``resource_download``, ``dataset_create``, ``api_package_search``); ``ckan_event`` if both missing
``ec``      param ``event_category``
``ea``      param ``event_action``
``el``      param ``event_label``
``ev``      param ``value`` (a number)
``cdN``     param ``cdN`` (custom dimensions keep their index; HDX: cd1 organisation, cd2 dataset kind,
            cd3 groups): register them as custom dimensions in GA4
``cmN``     param ``cmN`` (custom metrics, numbers)
``dl``      param ``page_location``; ``dr`` → ``page_referrer``; ``dt`` → ``page_title``;
            ``dh`` → ``page_hostname``; ``dp`` → ``page_path``
``ds``      param ``data_source``
``cid``     request ``client_id`` (``anonymous`` when missing)
``uip``     request ``ip_override`` (GA4 derives the location from it)
``v, t, tid, ua, z``  dropped (protocol version, hit type, UA property id, user agent, cache buster)
other keys  params under their own name (lower case, non-alphanumerics as ``_``)
==========  ==========================================================

Each event carries ``timestamp_micros`` from the event time (``mixpanel_meta.time``, else arrival time).
Values are cut to GA4's limits (names 40, values 100 characters, 25 params an event).
The ``api_secret`` travels only in the request URL: never logged, never in an error message.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import httpx

from core.retry import is_retryable

from .errors import DeliveryError, RejectedDelivery, RetryableDelivery, delivery_error_for_status
from .events import DEFAULT_GA_CLIENT_ID
from .mixpanel import parse_retry_after

if TYPE_CHECKING:
    from .buffer import Entry
    from .settings import AnalyticsSettings

SINK = "ga4"
MAX_NAME = 40
MAX_VALUE = 100
MAX_PARAMS = 25
RENAMED = {
    "ec": "event_category",
    "ea": "event_action",
    "el": "event_label",
    "ev": "value",
    "dl": "page_location",
    "dr": "page_referrer",
    "dt": "page_title",
    "dh": "page_hostname",
    "dp": "page_path",
    "ds": "data_source",
}
DROPPED = frozenset({"v", "t", "tid", "cid", "uip", "ua", "z"})
NUMERIC = re.compile(r"^(ev|cm\d+)$")
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


def _name(text: str) -> str:
    name = _NOT_NAME.sub("_", text.strip().lower()).strip("_")
    if name and not name[0].isalpha():
        name = "e_" + name
    return name[:MAX_NAME]


def event_name(ga_meta: dict[str, Any]) -> str:
    """The GA4 event name for a UA-style hit: ``<ec>_<ea>``."""
    parts = [str(ga_meta[key]) for key in ("ec", "ea") if ga_meta.get(key) not in (None, "")]
    return _name("_".join(parts)) or "ckan_event"


def event_params(ga_meta: dict[str, Any]) -> dict[str, Any]:
    """The GA4 params of a UA-style hit (see the module's table)."""
    params: dict[str, Any] = {}
    for key, value in ga_meta.items():
        if key in DROPPED or value is None or value == "" or len(params) >= MAX_PARAMS:
            continue
        name = RENAMED.get(key) or _name(key)
        if NUMERIC.match(key):
            try:
                params[name] = float(value)
            except (TypeError, ValueError):
                continue
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            params[name] = value
        else:
            params[name] = _text(value)[:MAX_VALUE]
    return params


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def to_ga4_event(message: dict[str, Any]) -> dict[str, Any]:
    """One buffered GA message as a GA4 event object."""
    ga_meta = message["ga_meta"]
    return {
        "name": event_name(ga_meta),
        "params": event_params(ga_meta),
        "timestamp_micros": int(message["time"] * 1_000_000),
    }


def client_of(message: dict[str, Any]) -> tuple[str, str | None]:
    """The (client_id, ip) a message's request is sent as: events of one request share them."""
    ga_meta = message["ga_meta"]
    return str(ga_meta.get("cid") or DEFAULT_GA_CLIENT_ID), (str(ga_meta["uip"]) if ga_meta.get("uip") else None)


def request_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The Measurement Protocol body for messages of one client."""
    client_id, ip = client_of(messages[0])
    body: dict[str, Any] = {"client_id": client_id, "events": [to_ga4_event(m) for m in messages]}
    if ip:
        body["ip_override"] = ip
    return body


class Ga4Sender:
    """Sends batches of buffered GA messages to the Measurement Protocol (25 events, one client a request)."""

    sink = SINK

    def __init__(self, config: AnalyticsSettings) -> None:
        self.batch_size = config.ga4_batch_size
        self.read_count = config.ga4_batch_size * 20
        self._endpoint = config.ga4_endpoint
        self._measurement_id = config.ga4_measurement_id
        self._api_secret = config.ga4_api_secret
        self._client = httpx.Client(timeout=config.http_timeout_sec)

    def configured(self) -> bool:
        """Whether ``GA4_MEASUREMENT_ID`` and ``GA4_API_SECRET`` are set."""
        return bool(self._measurement_id and self._api_secret)

    def batches(self, entries: list[Entry]) -> list[list[Entry]]:
        """Entries grouped by (client_id, ip), in order, at most ``batch_size`` a request."""
        by_client: dict[tuple[str, str | None], list[Entry]] = defaultdict(list)
        for entry in entries:
            by_client[client_of(entry.message)].append(entry)
        size = self.batch_size
        return [group[i : i + size] for group in by_client.values() for i in range(0, len(group), size)]

    def send(self, messages: list[dict[str, Any]]) -> None:
        """POST one batch; raise a :class:`DeliveryError` saying what to do next."""
        assert self._measurement_id and self._api_secret  # checked by configured()
        params = {"measurement_id": self._measurement_id, "api_secret": self._api_secret.get_secret_value()}
        try:
            response = self._client.post(self._endpoint, params=params, json=request_body(messages))
        except httpx.HTTPError as error:
            # str(error) could hold the URL and so the secret: only the error's type is reported.
            cls = RetryableDelivery if is_retryable(error) else RejectedDelivery
            raise cls(f"GA4 unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise _status_error(response)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _status_error(response: httpx.Response) -> DeliveryError:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return delivery_error_for_status(response.status_code, response.text[:300], retry_after)
