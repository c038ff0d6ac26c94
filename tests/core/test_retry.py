"""The one retry policy: what is retryable, and the backoff every caller shares (pure, no services)."""

from __future__ import annotations

import httpx
import pytest
import requests

from analyticsapi.errors import RejectedDelivery, RetryableDelivery, delivery_error_for_status
from core.errors import CkanError, CkanUnavailable
from core.retry import CKAN_CALLBACKS, RetryPolicy, is_retryable, retryable_status


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert retryable_status(status)
    assert isinstance(delivery_error_for_status(status, "x"), RetryableDelivery)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 409, 413, 422, None])
def test_final_statuses(status: int | None) -> None:
    assert not retryable_status(status)
    if status is not None and status >= 400:
        assert isinstance(delivery_error_for_status(status, "x"), RejectedDelivery)


def test_the_predicate_knows_httpx_requests_and_our_own_errors() -> None:
    request = httpx.Request("POST", "http://ckan.invalid/api/action/x")
    for retryable in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.RemoteProtocolError("dropped", request=request),
        requests.ConnectionError("refused"),
        requests.ReadTimeout("slow"),
        CkanUnavailable("CKAN x: HTTP 503"),
        RetryableDelivery("HTTP 429"),
        httpx.HTTPStatusError("503", request=request, response=httpx.Response(503, request=request)),
    ):
        assert is_retryable(retryable), retryable
    for final in (
        httpx.HTTPStatusError("404", request=request, response=httpx.Response(404, request=request)),
        httpx.TooManyRedirects("loop", request=request),
        requests.exceptions.InvalidURL("no"),
        CkanError("CKAN x: HTTP 403"),
        RejectedDelivery("HTTP 400"),
        ValueError("a bug"),
    ):
        assert not is_retryable(final), final


def test_backoff_doubles_to_the_cap_with_equal_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_sec=1.0, cap_sec=10.0)
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [policy.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(1, retry_after=7.0, rng=lambda: 0.0) == 7.0
    assert policy.delay(1, retry_after=3600.0, rng=lambda: 0.0) == 10.0  # a Retry-After never exceeds the cap


@pytest.mark.parametrize("hours", [0.01, 1.0, 24.0, 72.0])
def test_callbacks_keep_trying_for_the_whole_window(hours: float) -> None:
    retry = CKAN_CALLBACKS.rq_retry(hours * 3600)
    intervals = retry.intervals
    assert intervals[0] == 10 and all(b == min(2 * a, 3600) for a, b in zip(intervals, intervals[1:], strict=False))
    # rq repeats the last interval once the list is used up
    covered = sum(intervals[: retry.max]) + intervals[-1] * max(0, retry.max - len(intervals))
    assert covered >= hours * 3600
    assert covered - hours * 3600 < max(intervals)  # and not a whole step longer
