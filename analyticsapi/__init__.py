"""Analytics delivery: send-analytics; batches to Mixpanel and GA4 from ``analytics_q``.

:func:`register` is for the composition package, ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.registry import Registry


def register(registry: Registry) -> None:
    """Give the service the endpoint, ``analytics`` commands, the drain job and the drain a worker starts."""
    from . import api, cli, tasks

    registry.blueprint(api.bp, api.init_app)
    registry.command(cli.analytics)
    registry.job(tasks.drain, tasks.buffer_event)
    # Jobs the OGC process queued before the job moved here carry its old name.
    registry.job_alias("processes.tasks.send_analytics_event", tasks.buffer_event)
    registry.on_worker_start(tasks.on_worker_start)
