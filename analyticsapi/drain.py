"""The analytics drain: when delivery runs on ``analytics_q``, and what one run does.

No job per event, and no job per burst either. Every state lives in Redis, so a killed worker, a lost
enqueue or a Redis restart (AOF) strands nothing::

             append(): XADD to each destination's stream + SET NX drain-requested, in one script
    ┌──────┐ ──────────────────────────────────────────────────────────────────▶ ┌───────────┐
    │ IDLE │   only the request that set the flag enqueues a drain job, after    │ REQUESTED │
    └──────┘   its response went out; later events find the flag set: no job     └─────┬─────┘
       ▲                                                                               │ a worker runs
       │ nothing unread                                                                │ tasks.drain
       │                                                                               ▼
    ┌──┴───────────────┐  idle window over and   ┌──────────────────────────────────────────┐
    │ HAND-OVER        │  nothing held, or the   │ RUNNING: renews the flag after each pass │
    │ clear the flag,  │◀── budget ended ────────│ a pass, per destination: backoff over? → │◀─┐ next pass after
    │ then look for    │                         │ lease → claim → linger → send → ack |    │  │ POLL_SEC, or when
    │ unread events    │                         │ back off | dead-letter                   │──┘ a held batch is due
    └──┬───────────────┘                         └──────────────────────────────────────────┘
       │ unread events, or a backlog when the budget ended → request the next drain → REQUESTED
       ▼
    every drain ends by scheduling a TICK (a delayed drain through rq's scheduler): at the next retry
    time when a destination backs off, a held batch is due or a dead sender's lease must expire,
    otherwise after HDXRQ_ANALYTICS_TICK_SEC. Each worker also forces a drain when it starts.

* **Flag.** ``drain-requested`` is set by the edge (SET NX, 60 s) and renewed by a running drain for as
  long as a lease; so at most one drain waits at any time, and under steady traffic one drain job in one
  work horse delivers everything. A drain clears the flag *before* its last look for unread events: an
  event buffered before the clear is seen by that look, one buffered after it sets the flag itself.
* **Lease.** One sender per destination at a time holds ``lease:<sink>`` (a redis-py lock renewed between
  batches), so GA4, which cannot de-duplicate, never gets a batch from two workers. Entries are claimed
  through the consumer group, never popped: a killed sender's batch stays pending and is sent again, with
  the same ``$insert_id``s, once its lease expires.
* **Linger.** A batch (one Mixpanel token, or one GA4 client, up to the batch size) goes when it is full,
  or when its oldest event has waited ``HDXRQ_ANALYTICS_LINGER_MS``; until then its entries stay claimed
  and pending, and the drain keeps running (it never ends holding a batch, unless its budget ends). The
  wait counts from the event's arrival (its stream id, Redis's clock) or from when this drain first saw
  it, whichever the worker's clock puts first: a worker whose clock is behind Redis's waits from first
  sight, one ahead of it sends sooner; neither waits longer than the linger after first sight.
* **Backoff.** A retryable failure (:mod:`core.retry`) stops that destination until ``backoff:<sink>``'s
  ``not_before``; the other destination goes on. Too many attempts in a row, or a permanent refusal,
  move the batch to the dead-letter list.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import LockError
from rq import Retry

from core.connections import queue
from core.retry import RetryPolicy

from .buffer import MESSAGE_FIELD, PREFIX, Entry, SinkBuffer, encode, messages_of, stream_key
from .errors import RejectedDelivery, RetryableDelivery
from .ga4 import Ga4Sender
from .mixpanel import MixpanelSender

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script
    from redis.lock import Lock

    from core.settings import Settings

    from .events import AnalyticsEvent

log = logging.getLogger(__name__)

QUEUE_NAME = "analytics_q"
DRAIN_FUNCTION = "analyticsapi.tasks.drain"
REQUESTED_KEY = f"{PREFIX}:drain-requested"
REQUEST_TTL_SEC = 60
"""A requested drain that never ran (its enqueue failed) is requested again after this."""
TICK_KEY = f"{PREFIX}:tick"
"""Holds the due time (epoch seconds) of the scheduled tick."""
POLL_SEC = 0.1
"""How often a running drain looks for new events (a pass costs a few Redis round trips)."""
MIN_SLEEP_SEC = 0.001
"""The shortest wait for a held batch."""
ROUNDING_SEC = 1e-6
"""A batch that waited the linger but for this much (clock arithmetic rounds) is due."""
JOB_RESULT_TTL_SEC = 300
JOB_FAILURE_TTL_SEC = 7 * 24 * 3600
DRAIN_RETRY = Retry(max=3, interval=[5, 30, 120])
"""A drain that dies without ending normally (its worker killed, Redis gone under it) schedules no tick:
rq runs it again, so buffered events do not wait for the next request or worker start."""


# --- IDLE → REQUESTED: the edge ----------------------------------------------------------------------

_APPEND = """
for index = 1, #KEYS - 1 do
    redis.call('XADD', KEYS[index], '*', ARGV[#ARGV], ARGV[index])
end
return redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', ARGV[#ARGV - 1])
"""
"""KEYS: the destinations' streams, then the drain flag; ARGV: one message per stream, the flag's TTL, the
field name. Redis runs a script atomically and writes its commands to the AOF, as it would a MULTI/EXEC."""


def append(redis: Redis, event: AnalyticsEvent) -> bool:
    """Buffer ``event`` and raise the flag in one round trip; return whether the caller owes the drain
    (:func:`enqueue_drain`, after its response went out).

    One EVALSHA instead of a MULTI/XADD/SET/EXEC pipeline: the same single round trip, a third of the
    client's CPU time (redis-py builds, sends and parses one command instead of five).
    """
    messages = messages_of(event)
    keys = [stream_key(sink) for sink, _ in messages]
    keys.append(REQUESTED_KEY)
    args: list[Any] = [encode(message) for _, message in messages]
    args += [REQUEST_TTL_SEC, MESSAGE_FIELD]
    return _append_script(redis)(keys=keys, args=args) is not None


@functools.lru_cache(maxsize=8)
def _append_script(redis: Redis) -> Script:
    """The script bound to ``redis`` (loaded again by redis-py if Redis lost it, e.g. after a restart)."""
    return redis.register_script(_APPEND)


def job_timeout(settings: Settings) -> int:
    """RQ timeout of a drain: its time budget plus one last batch (HTTP timeout) and the lease."""
    return int(settings.analytics_drain_budget_sec + 2 * settings.analytics_http_timeout_sec + 60)


def enqueue_drain(redis: Redis, settings: Settings, *, trigger: str = "request", delay: float = 0.0) -> str:
    """Enqueue one drain job (after ``delay`` seconds); return its id."""
    q = queue(QUEUE_NAME, redis)
    options = {
        "job_timeout": job_timeout(settings),
        "result_ttl": JOB_RESULT_TTL_SEC,
        "failure_ttl": JOB_FAILURE_TTL_SEC,
        "description": f"analytics delivery ({trigger})",
        "retry": DRAIN_RETRY,
    }
    if delay > 0:
        job = q.enqueue_in(timedelta(seconds=delay), DRAIN_FUNCTION, trigger, **options)
    else:
        job = q.enqueue(DRAIN_FUNCTION, trigger, **options)
    return str(job.id)


def request_drain(redis: Redis, settings: Settings, *, force: bool = False) -> bool:
    """Enqueue a drain unless one is already waiting or running (``force``: in any case); return whether
    this call enqueued it."""
    if not redis.set(REQUESTED_KEY, "1", nx=not force, ex=REQUEST_TTL_SEC):
        return False
    enqueue_drain(redis, settings)
    return True


# --- RUNNING: the flag and the tick ------------------------------------------------------------------


def drain_running(redis: Redis, hold_sec: float) -> None:
    """Called by a drain at its start and after every pass: events arriving meanwhile enqueue nothing.

    The flag expires ``hold_sec`` after the last call, so a drain killed while holding it blocks new
    requests no longer than its lease blocks delivery.
    """
    redis.set(REQUESTED_KEY, "1", ex=max(1, int(hold_sec)))


def drain_finished(redis: Redis) -> None:
    """Called by a drain that delivered, before its last look for unread events: new ones request a drain."""
    redis.delete(REQUESTED_KEY)


def schedule_tick(redis: Redis, settings: Settings, delay: float, *, now: float | None = None) -> bool:
    """Make sure a drain runs within ``delay`` seconds; return whether a new tick was scheduled.

    A tick already due sooner is kept; an earlier one replaces the flag (an extra drain is harmless).
    """
    now = time.time() if now is None else now
    due = now + max(0.0, delay)
    current = redis.get(TICK_KEY)
    if current is not None and float(current) <= due + 1.0:
        return False
    # The flag outlives its tick a little: if the tick job is lost, the next drain schedules another.
    redis.set(TICK_KEY, repr(due), ex=int(delay) + job_timeout(settings) + 60)
    enqueue_drain(redis, settings, trigger="tick", delay=delay)
    return True


def tick_started(redis: Redis, now: float | None = None) -> None:
    """Called by a tick drain: forget a due time that has passed, so the next tick can be scheduled."""
    now = time.time() if now is None else now
    current = redis.get(TICK_KEY)
    if current is not None and float(current) <= now + 1.0:
        redis.delete(TICK_KEY)


# --- One drain job: passes while busy, then HAND-OVER -------------------------------------------------


def run_drain(
    redis: Redis,
    settings: Settings,
    trigger_name: str = "request",
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    delivery_clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Deliver the buffered events in batches; schedule the next drain; return what was done.

    ``clock``/``sleep``: the budget and the waits between passes; ``delivery_clock``: backoff and linger.
    """
    if trigger_name == "tick":
        tick_started(redis)
    delivery = Delivery.for_settings(redis, settings, clock=delivery_clock)
    drain_running(redis, delivery.lease_sec)
    report = None
    try:
        report = _deliver_while_busy(delivery, redis, clock, sleep)
    finally:
        delivery.close()
        # Even after a failure (Redis hiccup, bug) a tick comes back: buffered events never sit forever.
        come_back = report.come_back_in if report is not None else None
        schedule_tick(redis, settings, come_back if come_back is not None else settings.analytics_tick_sec)
    hand_over(redis, settings, report)
    if report.busy():
        log.info("analytics drain: delivered %s, dead-lettered %s", report.delivered, report.dead_lettered)
    return report.as_dict()


def _deliver_while_busy(
    delivery: Delivery, redis: Redis, clock: Callable[[], float], sleep: Callable[[float], None]
) -> DrainReport:
    """Pass after pass until no event came for the idle window (and no batch is held), the budget ends,
    or nothing is ours to send. Each pass after the first costs a few Redis round trips; a new drain job
    would cost a fork."""
    settings = delivery.settings
    deadline = clock() + settings.analytics_drain_budget_sec
    total = DrainReport()
    idle_until = clock() + settings.analytics_drain_idle_sec
    while True:
        report = delivery.run(deadline=delivery.clock() + max(0.0, deadline - clock()))
        total.merge(report)
        if report.busy():
            idle_until = clock() + settings.analytics_drain_idle_sec
        now = clock()
        if not report.active or report.more or now >= deadline:
            return total
        if report.held_for is None and now >= idle_until:
            return total
        drain_running(redis, delivery.lease_sec)
        sleep(POLL_SEC if report.held_for is None else max(MIN_SLEEP_SEC, min(POLL_SEC, report.held_for)))


def hand_over(redis: Redis, settings: Settings, report: DrainReport) -> None:
    """After delivering: clear the flag, then request the next drain for anything still unread.

    A drain that held no lease leaves the flag to the drain that holds one (or to its expiry).
    """
    if not report.active:
        return
    drain_finished(redis)
    if report.more or any(SinkBuffer(redis, sink).has_unread() for sink in report.active):
        request_drain(redis, settings)


# --- One pass: lease → claim → linger → send → ack | back off | dead-letter --------------------------


class Sender(Protocol):
    """What a destination provides (:class:`MixpanelSender`, :class:`Ga4Sender`)."""

    sink: str
    read_count: int
    batch_size: int

    def configured(self) -> bool: ...
    def batches(self, entries: list[Entry]) -> list[list[Entry]]: ...
    def send(self, messages: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


@dataclass
class DrainReport:
    """What one drain (or one pass) did, and when the next one is needed."""

    delivered: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    come_back_in: float | None = None
    """Seconds until a destination may be tried again (backoff, a lease to expire, a held batch due)."""
    held_for: float | None = None
    """Seconds until the first batch held for the linger is due (None: none held)."""
    more: bool = False
    """The time budget ran out with events left: drain again at once."""
    active: set[str] = field(default_factory=set)
    """Destinations this run held the lease of and left in good standing (not backing off)."""

    def count(self, counter: dict[str, int], sink: str, number: int) -> None:
        counter[sink] = counter.get(sink, 0) + number

    def wake_in(self, seconds: float) -> None:
        self.come_back_in = seconds if self.come_back_in is None else min(self.come_back_in, seconds)

    def hold(self, seconds: float) -> None:
        """A batch waits for the linger, due in ``seconds``."""
        self.held_for = seconds if self.held_for is None else min(self.held_for, seconds)
        self.wake_in(seconds)

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
        self.come_back_in, self.held_for = other.come_back_in, other.held_for
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


def lease_key(sink: str) -> str:
    """The lock one sender of ``sink`` holds while it delivers."""
    return f"{PREFIX}:lease:{sink}"


def _backoff_key(sink: str) -> str:
    return f"{PREFIX}:backoff:{sink}"


class Delivery:
    """Passes over the buffers of the given senders, within a time budget; remembers across passes when
    each claimed entry's linger started."""

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
        self.policy = RetryPolicy(settings.analytics_retry_base_sec, settings.analytics_retry_max_sec)
        self.linger_sec = settings.analytics_linger_ms / 1000
        # A lease shorter than one request could let a second sender resend a batch still in flight.
        self.lease_sec = max(settings.analytics_lease_sec, 2 * settings.analytics_http_timeout_sec)
        self._linger_from: dict[str, dict[str, float]] = {}
        self._claimed: dict[str, dict[str, Entry]] = {}
        """Per destination, the entries of the last claim, decoded once (held ones are read every pass)."""

    @classmethod
    def for_settings(cls, redis: Redis, settings: Settings, **kwargs: Any) -> Delivery:
        """A delivery to Mixpanel and GA4 as configured."""
        return cls(redis, settings, [MixpanelSender(settings), Ga4Sender(settings)], **kwargs)

    def run(self, deadline: float | None = None) -> DrainReport:
        """One pass over every destination, until done or ``deadline`` (``clock`` time)."""
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
        lease = self.redis.lock(lease_key(sender.sink), timeout=self.lease_sec, blocking=False, thread_local=False)
        if not lease.acquire():
            remaining = self.redis.pttl(lease_key(sender.sink))
            report.wake_in(remaining / 1000 if remaining and remaining > 0 else self.lease_sec)
            return
        try:
            if self._send_claimed(sender, buf, lease, deadline, report):
                report.active.add(sender.sink)
        except LockError:
            log.warning("%s: lease lost, another sender took over", sender.sink)
        finally:
            _release(lease)

    def _send_claimed(self, sender: Sender, buf: SinkBuffer, lease: Lock, deadline: float, report: DrainReport) -> bool:
        """Send the due batches, claim again, until none is due; return False when the destination must
        back off."""
        while True:
            if self.clock() >= deadline:
                report.more = report.more or buf.backlog() > 0
                return True
            entries = buf.claim(sender.read_count, known=self._claimed.get(sender.sink))
            due = self._due_batches(sender, entries, report)
            if not due:
                return True
            for batch in due:
                if not self._send_batch(sender, buf, batch, report):
                    return False
                lease.reacquire()

    def _due_batches(self, sender: Sender, entries: list[Entry], report: DrainReport) -> list[list[Entry]]:
        """The batches to send now: full ones, and those whose oldest entry waited the linger."""
        now = self.clock()
        known = self._linger_from.get(sender.sink, {})
        since = {e.id: known[e.id] if e.id in known else min(now, _arrival(e)) for e in entries}
        self._linger_from[sender.sink] = since
        self._claimed[sender.sink] = {entry.id: entry for entry in entries}
        due = []
        for batch in sender.batches(entries):
            waited = now - min(since[entry.id] for entry in batch)
            if len(batch) >= sender.batch_size or waited >= self.linger_sec - ROUNDING_SEC:
                due.append(batch)
            else:
                report.hold(self.linger_sec - waited)
        return due

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
        delay = self.policy.delay(attempt, retry_after=error.retry_after, rng=self.rng)
        self.redis.hset(key, "not_before", repr(self.clock() + delay))
        log.warning("%s: attempt %d failed (%s), retrying in %.1fs", sink, attempt, error.message, delay)
        report.wake_in(delay)
        return False

    def _backoff_remaining(self, sink: str) -> float:
        not_before = self.redis.hget(_backoff_key(sink), "not_before")
        return max(0.0, float(not_before) - self.clock()) if not_before else 0.0


def _arrival(entry: Entry) -> float:
    """When Redis buffered ``entry`` (its stream id's milliseconds, on Redis's clock)."""
    return int(entry.id.partition("-")[0]) / 1000


def _release(lease: Lock) -> None:
    try:
        lease.release()
    except LockError:
        pass  # expired or taken over: nothing of ours to release
