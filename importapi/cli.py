"""``./hdxrq.py import``: run the geopreview pipeline in the foreground, for an operator.

The progress bar is click's own (already a dependency through rq) and goes to stderr, so stdout carries
only the ``shape_info`` JSON and can be piped into ``jq``.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

import click

from core import progress
from core.errors import HdxError
from core.postgis import connect
from core.queues import QueueName
from core.runtime import Runtime

from . import callback, layers, tasks
from .errors import ImportProblem
from .pipeline import run_import


class _StageBar:
    """One click progress bar per stage, fed by ``report_progress``."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None
        self.shown = 0

    def __call__(self, stage: str, percent: float | None, message: str | None) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = click.progressbar(length=100, label=f"{stage:<12}", file=sys.stderr, show_eta=False)
            self.bar.__enter__()
            self.shown = 0
        if percent is not None and self.bar is not None and int(percent) > self.shown:
            self.bar.update(int(percent) - self.shown)
            self.shown = int(percent)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(100 - self.shown)
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command("import")
@click.argument("source")
@click.option("--resource-id", help="Import into this resource's layer (replacing it); default: a scratch layer.")
@click.option("--callback", "send", is_flag=True, help="Send the result to CKAN (needs --resource-id).")
@click.option("--keep", is_flag=True, help="Keep the scratch layer (without --resource-id it is dropped).")
@click.pass_obj
def import_command(rt: Runtime, source: str, resource_id: str | None, send: bool, keep: bool) -> None:
    """Import SOURCE (a file or an http(s) URL) and print the shape_info JSON."""
    if send and not resource_id:
        raise click.UsageError("--callback needs --resource-id")
    layer_id = layers.layer_id_for(resource_id or f"cli_{secrets.token_hex(6)}", rt.settings.postgis.table_name_prefix)
    bar = _StageBar()
    progress.listen(bar)
    try:
        shape_info = run_import(source, layer_id, settings=rt.settings).shape_info()
    except ImportProblem as error:
        shape_info = callback.failure_shape_info(layer_id, error)
    finally:
        bar.close()
        progress.listen(None)
    click.echo(json.dumps(shape_info, indent=2))
    if not resource_id and not keep and shape_info["state"] == "success":
        with connect(rt.settings, autocommit=True) as conn:
            layers.drop_layer(conn, layer_id)
        click.echo(f"(scratch layer {layer_id} dropped; use --keep to keep it)", err=True)
    if send and resource_id:
        _send(rt, resource_id, shape_info)
    if shape_info["state"] != "success":
        sys.exit(1)


def _send(rt: Runtime, resource_id: str, shape_info: dict[str, Any]) -> None:
    try:
        callback.deliver(rt.ckan, rt.settings, resource_id, shape_info)
        click.echo("callback delivered to CKAN", err=True)
    except HdxError as error:
        tasks.queue_callback(rt, resource_id, shape_info, None)
        click.echo(f"callback not delivered now ({error.message}); queued for retry on {QueueName.GEO}", err=True)
