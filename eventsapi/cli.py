"""``./hdxrq.py events ...``: detect events offline, follow the stream, forward it to a webhook."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import click
import httpx
from redis.exceptions import RedisError

from core.retry import RetryPolicy, is_retryable, retryable_status
from core.runtime import Runtime

from .bus import Entry, GroupConsumer
from .detect import detect_events
from .intake import event_time_now

log = logging.getLogger(__name__)

REDIS_PAUSE_SEC = 1.0
WEBHOOK_BACKOFF_CAP_SEC = 60.0


@click.group("events")
def events() -> None:
    """Change events: detect them offline, follow the stream, forward it to a webhook."""


@events.command("detect")
@click.argument("old", type=click.File("rb"))
@click.argument("new", type=click.File("rb"))
@click.option("--username", default=None, help="initiator_user_name of the events.")
def detect_command(old: Any, new: Any, username: str | None) -> None:
    """Print the events between two dataset dicts (JSON files, ``-`` for stdin) as JSON lines; no Redis."""
    old_dict, new_dict = _load_dataset(old), _load_dataset(new)
    for event in detect_events(old_dict, new_dict, username, event_time_now()):
        click.echo(json.dumps(event, ensure_ascii=False))


def _load_dataset(handle: Any) -> Any:
    try:
        data = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{handle.name}: not JSON ({error})") from None
    if isinstance(data, dict) and "success" in data and isinstance(data.get("result"), dict):
        return data["result"]  # a saved package_show answer
    if data is not None and not isinstance(data, dict):
        raise click.ClickException(f"{handle.name}: a dataset dict (JSON object) is expected")
    return data


def _consumer_options(default_group: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    options = [
        click.option("--group", default=default_group, show_default=True, help="Consumer group."),
        click.option("--consumer", default=None, help="Consumer name [default: host-pid]."),
        click.option("--type", "types", multiple=True, help="Only these event types (others are acked, skipped)."),
        click.option("--from-start", is_flag=True, help="Create the group at the stream's start, not its end."),
        click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10000)),
        click.option("--block-ms", default=5000, show_default=True, type=click.IntRange(0, 8000)),
        click.option(
            "--claim-idle-ms",
            default=60000,
            show_default=True,
            type=click.IntRange(0),
            help="Take over entries pending this long with another (dead) consumer.",
        ),
        click.option("--max-events", default=None, type=click.IntRange(1), help="Stop after this many events."),
        click.option("--idle-exit", is_flag=True, help="Stop when there is nothing left to read."),
    ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _group_consumer(runtime: Runtime, group: str, consumer: str | None, from_start: bool) -> GroupConsumer:
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    member = GroupConsumer(runtime.stream_redis, runtime.settings.event_bus.stream_name, group, name)
    member.ensure_group(from_start=from_start)
    return member


@events.command("tail")
@_consumer_options("hdxrq-tail")
@click.pass_obj
def tail_command(runtime: Runtime, **options: Any) -> None:
    """Follow the stream as a consumer group member, printing one JSON line per event and acking it."""
    member = _group_consumer(runtime, options["group"], options["consumer"], options["from_start"])
    wanted = set(options["types"])
    printed = 0

    def handle(batch: Sequence[Entry]) -> bool:
        nonlocal printed
        for entry in batch:
            if not wanted or entry.event_type in wanted:
                click.echo(json.dumps({"id": entry.id, "event_type": entry.event_type, "event": _body(entry)}))
                sys_flush()
                printed += 1
            member.ack([entry.id])  # after handling: a consumer killed mid-batch leaves the rest pending
            if options["max_events"] and printed >= options["max_events"]:
                return False
        return True

    _consume(member, options, handle)


def sys_flush() -> None:
    click.get_text_stream("stdout").flush()


def _body(entry: Entry) -> Any:
    try:
        return entry.event()
    except ValueError:
        return entry.body


def _consume(member: GroupConsumer, options: dict[str, Any], handle: Callable[[Sequence[Entry]], bool]) -> None:
    """Stale entries first, then new ones, until ``handle`` says stop or (``--idle-exit``) nothing is left."""
    while True:
        try:
            stale = member.claim_stale(options["claim_idle_ms"], options["batch_size"])
            if stale and not handle(stale):
                return
            fresh = member.read_new(options["batch_size"], None if stale else options["block_ms"] or None)
        except RedisError as error:
            click.echo(f"events: stream Redis unavailable ({type(error).__name__}); retrying", err=True)
            time.sleep(REDIS_PAUSE_SEC)
            continue
        if fresh and not handle(fresh):
            return
        if not stale and not fresh and options["idle_exit"]:
            return


@events.command("forward")
@click.option("--webhook", required=True, help='URL receiving POST {"events": [...]} (n8n style).')
@_consumer_options("hdxrq-forward")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0), help="Attempts after the first.")
@click.option(
    "--backoff", default=1.0, show_default=True, type=click.FloatRange(0), help="First pause, doubling (with jitter)."
)
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1), help="HTTP timeout (s).")
@click.option(
    "--max-deliveries",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Deliveries without a 2xx before an entry moves to the dead-letter stream.",
)
@click.pass_obj
def forward_command(runtime: Runtime, webhook: str, **options: Any) -> None:
    """Forward events to a webhook; ack only after a 2xx; entries that keep failing go to <stream>:dead-letter."""
    member = _group_consumer(runtime, options["group"], options["consumer"], options["from_start"])
    sender = WebhookSender(webhook, runtime.settings.ckan.user_agent, options)
    wanted = set(options["types"])
    forwarded = 0

    def handle(batch: Sequence[Entry]) -> bool:
        nonlocal forwarded
        skipped = [entry.id for entry in batch if wanted and entry.event_type not in wanted]
        member.ack(skipped)
        chosen = [entry for entry in batch if entry.id not in set(skipped)]
        for group in _delivery_groups(member, chosen, options["max_deliveries"]):
            if sender.send(group):
                member.ack([entry.id for entry in group])
                forwarded += len(group)
        return not (options["max_events"] and forwarded >= options["max_events"])

    try:
        _consume(member, options, handle)
    finally:
        sender.close()


def _delivery_groups(member: GroupConsumer, entries: list[Entry], max_deliveries: int) -> list[list[Entry]]:
    """New entries go as one batch; redelivered ones one by one, dead-lettered past ``max_deliveries``."""
    counts = member.delivery_counts(entry.id for entry in entries) if entries else {}
    if all(counts.get(entry.id, 1) <= 1 for entry in entries):
        return [entries] if entries else []
    groups = []
    for entry in entries:
        delivered = counts.get(entry.id, 1)
        if delivered > max_deliveries:
            member.dead_letter(entry, f"no 2xx from the webhook after {delivered - 1} deliveries")
            click.echo(f"events: {entry.id} moved to the dead-letter stream", err=True)
        else:
            groups.append([entry])
    return groups


class WebhookSender:
    """POSTs batches of events, retrying what the one retry policy (:mod:`core.retry`) calls retryable."""

    def __init__(self, url: str, user_agent: str, options: dict[str, Any]) -> None:
        self.url, self.retries = url, options["retries"]
        self.policy = RetryPolicy(base_sec=options["backoff"], cap_sec=WEBHOOK_BACKOFF_CAP_SEC)
        self._http = httpx.Client(timeout=options["timeout"], headers={"User-Agent": user_agent})

    def send(self, entries: Sequence[Entry]) -> bool:
        """Whether the webhook took the batch (a 2xx)."""
        payload = {"events": [_body(entry) for entry in entries]}
        for attempt in range(1, self.retries + 2):
            try:
                status = self._http.post(self.url, json=payload).status_code
            except httpx.HTTPError as error:
                log.warning("webhook unreachable: %s", type(error).__name__)
                outcome, again = type(error).__name__, is_retryable(error)
            else:
                if 200 <= status < 300:
                    return True
                outcome, again = f"status {status}", retryable_status(status)
            if not again or attempt > self.retries:
                break
            if self.policy.base_sec:
                time.sleep(self.policy.delay(attempt))
        click.echo(f"events: webhook refused {len(entries)} event(s) (last: {outcome})", err=True)
        return False

    def close(self) -> None:
        self._http.close()
