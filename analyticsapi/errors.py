"""Errors of the analytics slice.

HdxError
├── InvalidAnalyticsEvent       invalid-analytics-event     (HTTP 400: the body misses what its flags need)
├── AnalyticsBufferUnavailable  analytics-buffer-unavailable (HTTP 503: Redis did not take the event)
└── DeliveryError               analytics-delivery-failed
    ├── RetryableDelivery       analytics-delivery-retryable (429, 5xx, connection problems: try again)
    └── RejectedDelivery        analytics-delivery-rejected  (a 4xx that will never succeed: dead-letter)
"""

from __future__ import annotations

from core.errors import HdxError


class InvalidAnalyticsEvent(HdxError):
    """The posted body is not an analytics event this service can deliver."""

    error_type = "invalid-analytics-event"
    http_status = 400
    user_message = "Invalid analytics event"


class AnalyticsBufferUnavailable(HdxError):
    """The event could not be written to the Redis buffer."""

    error_type = "analytics-buffer-unavailable"
    http_status = 503
    user_message = "The analytics buffer is unavailable, the event was not accepted"


class DeliveryError(HdxError):
    """Sending a batch to Mixpanel or GA4 failed."""

    error_type = "analytics-delivery-failed"
    http_status = 502
    user_message = "Analytics delivery failed"

    def __init__(self, message: str | None = None, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status=status)
        self.status = status
        self.retry_after = retry_after


class RetryableDelivery(DeliveryError):
    """The destination is busy or unreachable (429, 5xx, timeout, connection error): retry with backoff."""

    error_type = "analytics-delivery-retryable"


class RejectedDelivery(DeliveryError):
    """The destination refused the batch for good (a 4xx other than 408/429): dead-letter it."""

    error_type = "analytics-delivery-rejected"


RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
"""HTTP statuses worth retrying; every other 4xx is a permanent rejection."""


def delivery_error_for_status(status: int, detail: str, retry_after: float | None = None) -> DeliveryError:
    """The error class that says what to do about an HTTP failure ``status``."""
    cls = RetryableDelivery if status in RETRYABLE_STATUSES else RejectedDelivery
    return cls(f"HTTP {status}: {detail}"[:500], status=status, retry_after=retry_after)
