"""What the endpoints do, without Flask: request an import, delete one layer, delete orphaned layers."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from core.connections import SERIALIZER
from core.errors import CkanError
from core.runtime import Runtime

from . import layers, tasks
from .errors import MissingUrl
from .requests_state import RequestState

log = logging.getLogger(__name__)

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_UUID_TAIL = r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}"
MIN_ALWAYS_ALLOWED = 10
"""delete-layers may always remove this many orphaned layers; beyond it, at most half of the layers."""


def request_import(rt: Runtime, dataset_id: str, resource_id: str, url: str | None, url_type: str) -> int:
    """Record the newest request for the resource and make sure one job will import it; its generation."""
    if not url:
        raise MissingUrl()
    generation, was_active = RequestState(rt.redis, resource_id).submit(dataset_id, url, url_type)
    if was_active and _job_pending(rt, resource_id):
        return generation  # the queued or running job reads the newest request before it finishes
    tasks.enqueue_import(rt, resource_id)
    return generation


def _job_pending(rt: Runtime, resource_id: str) -> bool:
    try:
        job = Job.fetch(tasks.import_job_id(resource_id), connection=rt.redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in _PENDING


def delete_one_layer(rt: Runtime, resource_id: str) -> bool:
    """Stop any pending import of the resource and drop its table; whether a table existed."""
    RequestState(rt.redis, resource_id).cancel()
    layer_id = layers.layer_id_for(resource_id, rt.settings.table_name_prefix)
    with rt.postgis.connection() as conn:
        return layers.drop_layer(conn, layer_id)


@dataclass
class OrphanReport:
    """The outcome of delete-layers."""

    state: str
    message: str
    items: list[str] = field(default_factory=list)
    dry_run: bool = True


def delete_orphaned_layers(rt: Runtime, *, dry_run: bool) -> OrphanReport:
    """Drop layer tables whose resource CKAN no longer lists (only when the list looks trustworthy)."""
    ids = rt.ckan.action("hdx_resource_id_list", token=rt.settings.gis_api_key, method="GET")
    if not isinstance(ids, list) or not ids or not all(isinstance(item, str) and item for item in ids):
        raise CkanError("CKAN's resource id list is empty or malformed: refusing to delete layers")
    prefix = rt.settings.table_name_prefix
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
