"""The door of the importapi slice: the only module other packages import from it.

Request an import, drop a layer, list or delete orphaned layers; each operation says who may call it
(:func:`core.auth.operation`), checks its input and the queue's cap, whichever entrance called it (CKAN's
endpoints, the OGC ``geopreview-import`` process). Other slices react to a layer being replaced or
dropped through :func:`on_layer_replaced` and :func:`on_layer_dropped`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from core.auth import Access, Caller, operation
from core.connections import SERIALIZER
from core.errors import CkanError
from core.jobs import check_capacity
from core.queues import QueueName
from core.runtime import Runtime

from . import layers, tasks
from .errors import MissingUrl
from .requests_state import RequestState

if TYPE_CHECKING:
    import psycopg

    from core.registry import Registry

log = logging.getLogger(__name__)

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_UUID_TAIL = r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}"
MIN_ALWAYS_ALLOWED = 10
"""delete-layers may always remove this many orphaned layers; beyond it, at most half of the layers."""


@operation(Access.NOTIFIER)
def request_import(
    rt: Runtime, caller: Caller, dataset_id: str, resource_id: str, url: str | None, url_type: str
) -> str:
    """Record the newest request for the resource and make sure one job will import it; the job's id."""
    if not url:
        raise MissingUrl()
    check_capacity(rt.settings, rt.redis, QueueName.GEO)
    _, was_active = RequestState(rt.redis, resource_id).submit(dataset_id, url, url_type)
    if not (was_active and _job_pending(rt, resource_id)):  # else the pending job imports the newest request
        tasks.enqueue_import(rt, resource_id)
    return tasks.import_job_id(resource_id)


def _job_pending(rt: Runtime, resource_id: str) -> bool:
    try:
        job = Job.fetch(tasks.import_job_id(resource_id), connection=rt.redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in _PENDING


@operation(Access.NOTIFIER)
def delete_one_layer(rt: Runtime, caller: Caller, resource_id: str) -> bool:
    """Stop any pending import of the resource and drop its table; whether a table existed."""
    RequestState(rt.redis, resource_id).cancel()
    layer_id = layers.layer_id_for(resource_id, rt.settings.postgis.table_name_prefix)
    with rt.postgis.connection() as conn:
        return layers.drop_layer(conn, layer_id)


@dataclass
class OrphanReport:
    """The outcome of delete-layers."""

    state: str
    message: str
    items: list[str] = field(default_factory=list)
    dry_run: bool = True


@operation(Access.NOTIFIER)
def list_orphaned_layers(rt: Runtime, caller: Caller) -> OrphanReport:
    """The layer tables whose resource CKAN no longer lists (a dry run of :func:`delete_orphaned_layers`)."""
    return _orphaned_layers(rt, dry_run=True)


@operation(Access.ADMIN)
def delete_orphaned_layers(rt: Runtime, caller: Caller) -> OrphanReport:
    """Drop layer tables whose resource CKAN no longer lists (only when the list looks trustworthy)."""
    return _orphaned_layers(rt, dry_run=False)


def _orphaned_layers(rt: Runtime, *, dry_run: bool) -> OrphanReport:
    ids = rt.ckan.action("hdx_resource_id_list", token=rt.settings.ckan.gis_api_key, method="GET")
    if not isinstance(ids, list) or not ids or not all(isinstance(item, str) and item for item in ids):
        raise CkanError("CKAN's resource id list is empty or malformed: refusing to delete layers")
    prefix = rt.settings.postgis.table_name_prefix
    pattern = re.compile(rf"^{re.escape(prefix)}_{_UUID_TAIL}$")
    known = {layers.layer_id_for(resource_id, prefix) for resource_id in ids}
    with rt.postgis.connection() as conn:
        tables = [name for name in layers.list_layer_tables(conn, prefix) if pattern.match(name)]
        orphans = [name for name in tables if name not in known]
        message = (
            f"Deleting {len(orphans)} layers from postgis out of {len(tables)}. "
            f"A total of {len(ids)} resources was found on CKAN"
        )
        if len(orphans) > max(MIN_ALWAYS_ALLOWED, len(tables) // 2):
            refusal = f"Refusing: {len(orphans)} of {len(tables)} layers would go; CKAN's list looks incomplete"
            return OrphanReport("failure", refusal, orphans, dry_run)
        if not dry_run:
            layers.drop_layers(conn, orphans)
            log.info("deleted %d orphaned layers", len(orphans))
    return OrphanReport("success", message, orphans, dry_run)


LayerReplaced = Callable[[Runtime, str], None]
"""``listener(runtime, layer_id)``: an import has just made ``layer_id`` a new table."""
LayerDropped = Callable[["psycopg.Connection", str], None]
"""``listener(connection, layer_id)``: called inside the transaction that drops the layer's table."""


def on_layer_replaced(registry: Registry, listener: LayerReplaced) -> None:
    """Call ``listener`` after every import that replaced a layer."""
    registry.listen(layers.LAYER_REPLACED, listener)


def on_layer_dropped(registry: Registry, listener: LayerDropped) -> None:
    """Call ``listener`` in the transaction of every layer dropped (what it writes commits with the drop)."""
    registry.listen(layers.LAYER_DROPPED, listener)
