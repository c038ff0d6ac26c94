"""The one retry policy: what is worth another attempt, and how long to wait before it.

Every call to an outside service that may be retried follows it: CKAN calls and callbacks
(:mod:`core.ckan`, ``importapi.callback``, the file-structure callback), analytics delivery to Mixpanel
and GA4 (``analyticsapi.drain``) and webhook forwarding (``./hdxrq.py events forward``).

* **Retryable:** an HTTP status in :data:`RETRYABLE_STATUSES` (408, 425, 429 and every 5xx), or an
  exception in :data:`RETRYABLE_ERRORS` (timeouts, refused or dropped connections, protocol errors:
  httpx's and requests'), or one of ours that says so (:class:`Retryable`). :func:`is_retryable` is the
  predicate. Everything else (another 4xx, a refusal in the body) fails at once.
* **Backoff:** exponential with "equal jitter": attempt *n* waits between half and all of
  ``min(cap, base × 2^(n-1))``, and never less than a ``Retry-After`` the service sent (up to the cap).
  Jitter spreads the retries of many callers that failed together.

Retries are durable where losing one would lose data: a CKAN callback is an rq job with
:meth:`RetryPolicy.rq_retry` (rq's ``Retry``, run by ``--with-scheduler``); analytics keep their
backoff in Redis; only the webhook forwarder, whose entries stay pending in Redis anyway, waits in
process. Retrying libraries (tenacity, stamina) wrap a call and sleep between attempts, which fits none
of the durable cases, so the policy is this module's data and two small functions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import requests
from rq import Retry

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 425, 429, *range(500, 600)})
"""Timeout, too early, too many requests, and every server error; any other status is final."""


class Retryable(Exception):
    """Mixin for our own errors that mean "try again later" (``CkanUnavailable``, ``RetryableDelivery``)."""


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,  # timeouts, connect/read/write errors, dropped connections, protocol errors
    requests.ConnectionError,  # the mixpanel library's transport
    requests.Timeout,
    Retryable,
)


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP answer with ``status`` is worth another attempt."""
    return status in RETRYABLE_STATUSES


def is_retryable(error: BaseException) -> bool:
    """The predicate: whether ``error`` (raised by a call to an outside service) is worth another attempt."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return retryable_status(error.response.status_code)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """The backoff of one kind of call: its first step and its cap, in seconds."""

    base_sec: float
    cap_sec: float

    def step(self, attempt: int) -> float:
        """The exponential step after the ``attempt``-th failure in a row (1 for the first), capped."""
        return min(self.cap_sec, self.base_sec * 2.0 ** max(0, attempt - 1))

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after the ``attempt``-th failure in a row: between half and all of its step."""
        step = self.step(attempt)
        delay = step / 2 + rng() * step / 2
        return max(delay, min(retry_after, self.cap_sec)) if retry_after else delay

    def rq_retry(self, window_sec: float) -> Retry:
        """rq's ``Retry`` that keeps trying for at least ``window_sec``.

        rq fixes the intervals when the job is queued, so they take the whole step (no jitter); past the
        cap rq repeats the last interval.
        """
        intervals: list[int] = []
        while sum(intervals) < window_sec and (not intervals or intervals[-1] < self.cap_sec):
            intervals.append(max(1, round(self.step(len(intervals) + 1))))
        repeats = max(0, math.ceil((window_sec - sum(intervals)) / intervals[-1]))
        return Retry(max=len(intervals) + repeats, interval=intervals)


CKAN_CALLBACKS = RetryPolicy(base_sec=10.0, cap_sec=3600.0)
"""Callbacks to CKAN: 10 s, doubling to an hour, then hourly for ``HDXRQ_CALLBACK_RETRY_HOURS``."""
