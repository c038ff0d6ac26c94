"""``./hdxrq.py analytics ...``: buffer status, drain now, inspect and replay dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from core.runtime import Runtime

from . import buffer
from . import drain as _drain
from .settings import AnalyticsSettings


@click.group("analytics")
def analytics() -> None:
    """Analytics delivery to Mixpanel and GA4: buffer status, drain, dead letters."""


@analytics.command("status")
@click.pass_obj
def status(runtime: Runtime) -> None:
    """Events waiting per destination and dead-lettered events."""
    redis = runtime.redis
    counts: dict[str, Any] = {sink: buffer.SinkBuffer(redis, sink).backlog() for sink in buffer.SINKS}
    counts["dead_letter"] = int(redis.llen(buffer.DEAD_LETTER_KEY))
    click.echo(json.dumps(counts, indent=2))


@analytics.command("drain")
@click.pass_obj
def drain(runtime: Runtime) -> None:
    """Queue a delivery run on analytics_q now (a worker runs it)."""
    job_id = _drain.enqueue_drain(runtime.redis, AnalyticsSettings.of(runtime.settings), trigger="cli")
    click.echo(f"queued {job_id}")


@analytics.group("dead-letter")
def dead_letter() -> None:
    """Events a destination refused for good (or after too many attempts)."""


@dead_letter.command("list")
@click.option("--limit", type=int, default=None, help="Show at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON record a line, message included.")
@click.pass_obj
def list_dead_letters(runtime: Runtime, limit: int | None, as_json: bool) -> None:
    """List dead-lettered events, oldest first."""
    records = buffer.dead_letters(runtime.redis, limit)
    for record in records:
        click.echo(json.dumps(record, ensure_ascii=False) if as_json else _summary(record))
    if not as_json:
        click.echo(f"{len(records)} dead-lettered event(s) shown, {runtime.redis.llen(buffer.DEAD_LETTER_KEY)} in all")


def _summary(record: dict[str, Any]) -> str:
    message = record.get("message", {})
    name = message.get("event") or (message.get("ga_meta") or {}).get("ea", "?")
    when = datetime.fromtimestamp(record.get("failed_at", 0), UTC).isoformat(timespec="seconds")
    return f"{when}  {record.get('sink')}  {name!r}  {record.get('status')}  {record.get('reason')}"


@dead_letter.command("replay")
@click.option("--limit", type=int, default=None, help="Replay at most this many (oldest first).")
@click.option("--sink", type=click.Choice(buffer.SINKS), default=None, help="Only this destination's events.")
@click.pass_obj
def replay(runtime: Runtime, limit: int | None, sink: str | None) -> None:
    """Put dead-lettered events back in the buffer (same $insert_id) and queue a delivery run."""
    moved = buffer.replay_dead_letters(runtime.redis, limit, sink)
    if moved:
        _drain.enqueue_drain(runtime.redis, AnalyticsSettings.of(runtime.settings), trigger="replay")
    click.echo(f"replayed {moved} event(s)")


@dead_letter.command("purge")
@click.confirmation_option(prompt="Delete every dead-lettered analytics event?")
@click.pass_obj
def purge(runtime: Runtime) -> None:
    """Delete the dead-lettered events for good."""
    removed = runtime.redis.llen(buffer.DEAD_LETTER_KEY)
    runtime.redis.delete(buffer.DEAD_LETTER_KEY)
    click.echo(f"deleted {removed} event(s)")
