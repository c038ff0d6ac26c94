"""Errors of the analytics slice.

HdxError
├── InvalidAnalyticsEvent       invalid-analytics-event     (HTTP 400: the body misses what its flags need)
├── AnalyticsBufferUnavailable  analytics-buffer-unavailable (HTTP 503: Redis did not take the event)
└── DeliveryError               analytics-delivery-failed
    ├── RetryableDelivery       analytics-delivery-retryable (what core.retry calls retryable: back off)
    └── RejectedDelivery        analytics-delivery-rejected  (anything else: dead-letter)
"""

from __future__ import annotations

from core.errors import HdxError
from core.retry import Retryable, retryable_status


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


class RetryableDelivery(DeliveryError, Retryable):
    """The destination is busy or unreachable (429, 5xx, timeout, connection error): retry with backoff."""

    error_type = "analytics-delivery-retryable"


class RejectedDelivery(DeliveryError):
    """The destination refused the batch for good (a 4xx other than 408/425/429): dead-letter it."""

    error_type = "analytics-delivery-rejected"


def delivery_error_for_status(status: int, detail: str, retry_after: float | None = None) -> DeliveryError:
    """The error class that says what to do about an HTTP failure ``status``."""
    cls = RetryableDelivery if retryable_status(status) else RejectedDelivery
    return cls(f"HTTP {status}: {detail}"[:500], status=status, retry_after=retry_after)
