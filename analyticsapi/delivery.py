"""One drain: claim buffered events, send them in batches, acknowledge, back off or dead-letter.

Per destination: skip it while it backs off; take its lease (one sender at a time, so GA4, which has no
de-duplication, never gets the same batch from two workers); claim entries (pending ones first, i.e.
those a killed or failed sender left behind); send batch by batch, acknowledging each batch that
landed. A retryable failure (429, 5xx, connection) stops that destination and sets its next attempt
after an exponential delay with jitter; a permanent 4xx, or too many attempts, dead-letters the batch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import LockError

from .buffer import PREFIX, Entry, SinkBuffer
from .errors import RejectedDelivery, RetryableDelivery
from .ga4 import Ga4Sender
from .mixpanel import MixpanelSender

if TYPE_CHECKING:
    from redis import Redis
    from redis.lock import Lock

    from core.settings import Settings

log = logging.getLogger(__name__)


class Sender(Protocol):
    """What a destination provides (:class:`MixpanelSender`, :class:`Ga4Sender`)."""

    sink: str
    read_count: int

    def configured(self) -> bool: ...
    def batches(self, entries: list[Entry]) -> list[list[Entry]]: ...
    def send(self, messages: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


@dataclass
class DrainReport:
    """What one drain did, and when the next one is needed."""

    delivered: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    come_back_in: float | None = None
    """Seconds until a destination may be tried again (backoff, or a lease to expire)."""
    more: bool = False
    """The time budget ran out with events left: drain again at once."""
    active: set[str] = field(default_factory=set)
    """Destinations this run held the lease of and left in good standing (not backing off)."""

    def count(self, counter: dict[str, int], sink: str, number: int) -> None:
        counter[sink] = counter.get(sink, 0) + number

    def wake_in(self, seconds: float) -> None:
        self.come_back_in = seconds if self.come_back_in is None else min(self.come_back_in, seconds)

    def busy(self) -> bool:
        """Whether this run sent anything (delivered or dead-lettered)."""
        return bool(self.delivered or self.dead_lettered)

    def merge(self, other: DrainReport) -> None:
        """Add ``other`` (a later pass of the same drain) to this report."""
        for mine, theirs in ((self.delivered, other.delivered), (self.requests, other.requests)):
            for sink, number in theirs.items():
                self.count(mine, sink, number)
        for sink, number in other.dead_lettered.items():
            self.count(self.dead_lettered, sink, number)
        self.come_back_in = other.come_back_in
        self.more = other.more
        self.active = other.active

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "requests": self.requests,
            "dead_lettered": self.dead_lettered,
            "come_back_in": self.come_back_in,
            "more": self.more,
        }


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float], retry_after: float | None) -> float:
    """Exponential delay with jitter for the ``attempt``-th failure in a row (at least ``Retry-After``)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = ceiling / 2 + rng() * ceiling / 2  # "equal jitter": never less than half the exponential step
    return max(delay, min(retry_after, cap)) if retry_after else delay


class Delivery:
    """Drains the buffers of the given senders within a time budget."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        senders: list[Sender],
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.senders = senders
        self.clock = clock
        self.rng = rng
        # A lease shorter than one request could let a second sender resend a batch still in flight.
        self.lease_sec = max(settings.analytics_lease_sec, 2 * settings.analytics_http_timeout_sec)

    @classmethod
    def for_settings(cls, redis: Redis, settings: Settings, **kwargs: Any) -> Delivery:
        """A delivery to Mixpanel and GA4 as configured."""
        return cls(redis, settings, [MixpanelSender(settings), Ga4Sender(settings)], **kwargs)

    def run(self, deadline: float | None = None) -> DrainReport:
        """Deliver what is buffered, destination by destination, until done or ``deadline`` (``clock`` time)."""
        report = DrainReport()
        if deadline is None:
            deadline = self.clock() + self.settings.analytics_drain_budget_sec
        for sender in self.senders:
            if sender.configured():
                self._drain(sender, deadline, report)
        return report

    def close(self) -> None:
        """Close the senders' HTTP clients."""
        for sender in self.senders:
            sender.close()

    def _drain(self, sender: Sender, deadline: float, report: DrainReport) -> None:
        buf = SinkBuffer(self.redis, sender.sink)
        buf.ensure_group()
        wait = self._backoff_remaining(sender.sink)
        if wait > 0:
            report.wake_in(wait)
            return
        lease = buf.lease(self.lease_sec)
        if not lease.acquire():
            report.wake_in(buf.lease_remaining() or self.lease_sec)
            return
        try:
            if self._send_claimed(sender, buf, lease, deadline, report):
                report.active.add(sender.sink)
        except LockError:
            log.warning("%s: lease lost, another sender took over", sender.sink)
        finally:
            _release(lease)

    def _send_claimed(self, sender: Sender, buf: SinkBuffer, lease: Lock, deadline: float, report: DrainReport) -> bool:
        """Send batch by batch; return False when the destination must back off."""
        while True:
            if self.clock() >= deadline:
                report.more = report.more or buf.backlog() > 0
                return True
            entries = buf.claim(sender.read_count)
            if not entries:
                return True
            for batch in sender.batches(entries):
                if not self._send_batch(sender, buf, batch, report):
                    return False
                lease.reacquire()

    def _send_batch(self, sender: Sender, buf: SinkBuffer, batch: list[Entry], report: DrainReport) -> bool:
        """Send one batch; return whether to go on with this destination."""
        try:
            sender.send([entry.message for entry in batch])
        except RetryableDelivery as error:
            report.count(report.requests, sender.sink, 1)
            return self._retry_later(sender.sink, buf, batch, error, report)
        except RejectedDelivery as error:
            report.count(report.requests, sender.sink, 1)
            log.error("%s rejected %d event(s), dead-lettered: %s", sender.sink, len(batch), error.message)
            buf.dead_letter(batch, error.message, error.status)
            report.count(report.dead_lettered, sender.sink, len(batch))
            return True
        report.count(report.requests, sender.sink, 1)
        buf.ack(batch)
        self.redis.delete(_backoff_key(sender.sink))
        report.count(report.delivered, sender.sink, len(batch))
        return True

    def _retry_later(
        self, sink: str, buf: SinkBuffer, batch: list[Entry], error: RetryableDelivery, report: DrainReport
    ) -> bool:
        key = _backoff_key(sink)
        attempt = int(self.redis.hincrby(key, "attempt", 1))
        if attempt >= self.settings.analytics_max_attempts:
            reason = f"gave up after {attempt} attempts: {error.message}"
            log.error("%s: %d event(s) dead-lettered, %s", sink, len(batch), reason)
            buf.dead_letter(batch, reason, error.status)
            report.count(report.dead_lettered, sink, len(batch))
            self.redis.delete(key)
            return True
        settings = self.settings
        delay = backoff_delay(
            attempt, settings.analytics_retry_base_sec, settings.analytics_retry_max_sec, self.rng, error.retry_after
        )
        self.redis.hset(key, "not_before", repr(self.clock() + delay))
        log.warning("%s: attempt %d failed (%s), retrying in %.1fs", sink, attempt, error.message, delay)
        report.wake_in(delay)
        return False

    def _backoff_remaining(self, sink: str) -> float:
        not_before = self.redis.hget(_backoff_key(sink), "not_before")
        return max(0.0, float(not_before) - self.clock()) if not_before else 0.0


def _backoff_key(sink: str) -> str:
    return f"{PREFIX}:backoff:{sink}"


def _release(lease: Lock) -> None:
    try:
        lease.release()
    except LockError:
        pass  # expired or taken over: nothing of ours to release
