"""``./hdxrq.py schedule list|add|cancel``: scheduled CKAN calls for operators, without the HTTP API."""

from __future__ import annotations

import json
from typing import Any

import click

from core.auth import OPERATOR
from core.finite import NonFiniteNumber
from core.runtime import Runtime

from . import service
from .errors import InvalidSchedule


@click.group("schedule")
def schedule() -> None:
    """Scheduled CKAN calls: list, add and cancel (run by workers started with --with-scheduler)."""


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print list_jobs' JSON instead of a table.")
@click.pass_obj
def list_command(runtime: Runtime, as_json: bool) -> None:
    """Show every schedule with its next run and last result."""
    jobs = [item.to_json() for item in service.list_schedules(runtime, OPERATOR)]
    if as_json:
        click.echo(json.dumps({"jobs": jobs, "success": True}, indent=2))
        return
    if not jobs:
        click.echo("No scheduled CKAN calls.")
        return
    for job in jobs:
        click.echo(f"{job['id']}  next: {job['next_run'] or '-'}  last: {_last(job)}  {job['description']}")


@schedule.command("add")
@click.argument("action")
@click.option("--method", type=click.Choice(["post", "get"]), default="post", show_default=True)
@click.option("--params", "params", default="{}", help="api_params as a JSON object.")
@click.option("--in-minutes", type=float, default=0, help="Delay (one-shot) or first-run delay.")
@click.option("--in-hours", type=float, default=0)
@click.option("--in-days", type=float, default=0)
@click.option("--every", "interval_minutes", type=int, default=None, help="Repeat every N minutes.")
@click.option("--cron", default=None, help="Repeat on a five-field cron expression, in UTC (e.g. '0 3 * * *').")
@click.pass_obj
def add_command(
    runtime: Runtime,
    action: str,
    method: str,
    params: str,
    in_minutes: float,
    in_hours: float,
    in_days: float,
    interval_minutes: int | None,
    cron: str | None,
) -> None:
    """Schedule a call to the CKAN action ACTION (once after a delay, --every N minutes, or on --cron)."""
    try:
        api_params = json.loads(params)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error.msg}", param_hint="--params") from None
    body: dict[str, Any] = {
        "action": action,
        "method": method,
        "api_params": api_params,
        "sch_minutes": in_minutes,
        "sch_hours": in_hours,
        "sch_days": in_days,
        "interval_minutes": interval_minutes,
        "cron": cron,
    }
    try:
        created = service.add_schedule(runtime, OPERATOR, body)
    except (InvalidSchedule, NonFiniteNumber) as error:
        raise click.ClickException(f"Could not schedule job: {error.message}") from None
    click.echo(f"{created.id}  next: {created.to_json()['next_run']}  {created.description}")


@schedule.command("cancel")
@click.argument("schedule_id")
@click.pass_obj
def cancel_command(runtime: Runtime, schedule_id: str) -> None:
    """Cancel a schedule: no further call is made."""
    if not service.cancel_schedule(runtime, OPERATOR, schedule_id):
        raise click.ClickException(f"No scheduled job {schedule_id[:64]}")
    click.echo(f"Cancelled {schedule_id}")


def _last(job: dict[str, Any]) -> str:
    last = job["last_run"]
    if not last:
        return "never"
    status = last["status"] if last["status"] is not None else "no answer"
    return f"{last['at']} HTTP {status} {last['duration_ms']} ms"
