"""``ckan hdxrq ...``: the extension's commands."""

from __future__ import annotations

import ckan.plugins.toolkit as toolkit
import click

from . import notify, pending
from .client import HdxrqClient
from .settings import ExtensionSettings


@click.group(short_help="ckanext-hdxrq: the notifications CKAN sends to hdxrq.")
def hdxrq() -> None:
    pass


@hdxrq.command(short_help="Send the notifications parked while hdxrq did not answer.")
def resend() -> None:
    """Send every parked notification to hdxrq, oldest first (run it from cron, or after an outage).

    Exits with status 1 when some are still parked because hdxrq still does not answer.
    """
    before = pending.count()
    client = HdxrqClient(ExtensionSettings.from_config(toolkit.config))
    try:
        done = notify.resend(client)
    finally:
        client.close()
    left = pending.count()
    click.echo(f"{before - left} sent or dropped, {left} still parked")
    if not done:
        raise click.exceptions.Exit(1)


def get_commands() -> list[click.Command]:
    return [hdxrq]
