"""What hdxrq is told about one committed dataset write, and telling it.

Pure decisions first: from the dataset before and after the write, the change events to hand over, the
resources whose file hdxrq must (re)import and the layers it must drop (their resource deleted, purged or
no longer in a geo format: a deleted resource's map tiles must not stay public). Then delivery, with the
configured timeouts: one that hdxrq does not take is logged and counted, never raised, because the save it
reports has already been committed; one it would take a moment later (it did not answer) is parked in
CKAN's Redis and sent again (:mod:`.pending`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from . import failures, pending
from .client import HdxrqClient, HdxrqError
from .outbox import DatasetWrite
from .settings import ExtensionSettings

log = logging.getLogger(__name__)

IMPORT_TRIGGERS = ("url", "url_type", "format", "last_modified")
"""A geo resource is imported again when one of these changes (a new link, a new upload, a new format)."""


@dataclass(frozen=True)
class ChangeEvents:
    """``create-change-events`` for one dataset: its versions before and after the transaction."""

    kind: ClassVar[str] = "create-change-events"
    dataset_id: str
    username: str | None
    old: dict[str, Any]
    new: dict[str, Any]

    def send(self, client: HdxrqClient) -> None:
        client.create_change_events(self.username, self.old, self.new)


@dataclass(frozen=True)
class AddLayer:
    """``add-layer`` for one resource whose file is new or changed."""

    kind: ClassVar[str] = "add-layer"
    dataset_id: str
    resource_id: str
    download_url: str
    url_type: str

    def send(self, client: HdxrqClient) -> None:
        client.add_layer(self.dataset_id, self.resource_id, self.download_url, self.url_type)


@dataclass(frozen=True)
class DropLayer:
    """``delete-one-layer`` for one geo resource that is gone."""

    kind: ClassVar[str] = "delete-one-layer"
    dataset_id: str
    resource_id: str

    def send(self, client: HdxrqClient) -> None:
        client.delete_layer(self.resource_id)


Notification = ChangeEvents | AddLayer | DropLayer
KINDS: dict[str, type[Notification]] = {kind.kind: kind for kind in (ChangeEvents, AddLayer, DropLayer)}


def resources_to_import(
    old: Mapping[str, Any], new: Mapping[str, Any], settings: ExtensionSettings
) -> list[dict[str, Any]]:
    """Geo resources of ``new`` that ``old`` lacks, or whose file or format changed.

    A dataset restored from the deleted state gets all of its geo resources imported again: their layers
    were dropped when it was deleted.
    """
    if new.get("state") == "deleted":
        return []
    restored = old.get("state") == "deleted"
    before = {} if restored else {resource.get("id"): resource for resource in old.get("resources") or []}
    chosen = []
    for resource in new.get("resources") or []:
        if not settings.is_geo(resource) or not resource.get("url"):
            continue
        previous = before.get(resource.get("id"))
        if previous is None or any(previous.get(key) != resource.get(key) for key in IMPORT_TRIGGERS):
            chosen.append(resource)
    return chosen


def layers_to_drop(
    old: Mapping[str, Any], new: Mapping[str, Any] | None, settings: ExtensionSettings
) -> list[dict[str, Any]]:
    """Geo resources of ``old`` that are gone from ``new`` (None: purged), or no longer in a geo format.

    Every resource of a deleted or purged dataset is gone. Dropping is idempotent on hdxrq's side, so a
    resource that never had a layer costs one cheap call.
    """
    after: dict[Any, Mapping[str, Any]] = {}
    if new is not None and new.get("state") != "deleted":
        after = {resource.get("id"): resource for resource in new.get("resources") or []}
    gone = []
    for resource in old.get("resources") or []:
        if not settings.is_geo(resource) or not resource.get("id"):
            continue
        current = after.get(resource["id"])
        if current is None or not settings.is_geo(current):
            gone.append(resource)
    return gone


def url_type(resource: Mapping[str, Any]) -> str:
    """``upload`` for a file stored by CKAN, ``api`` for anything else (as HDX's CKAN sends it)."""
    return "upload" if resource.get("url_type") == "upload" else "api"


def notifications_for(
    write: DatasetWrite, new: dict[str, Any] | None, settings: ExtensionSettings
) -> list[Notification]:
    """What hdxrq must hear about one written dataset, now ``new`` after the write (None: purged).

    A purge has no new dataset to describe, so it sends no change events (deleting the dataset sent
    ``dataset-deleted`` already); it drops the layers.
    """
    notes: list[Notification] = []
    if write.old is None:
        log.warning("hdxrq: dataset %s was written but not read before: no notification", write.dataset_id)
        return notes
    if settings.change_events and new is not None:
        notes.append(ChangeEvents(write.dataset_id, write.username, write.old, new))
    if settings.geopreview:
        notes.extend(
            DropLayer(write.dataset_id, resource["id"]) for resource in layers_to_drop(write.old, new, settings)
        )
        if new is not None:
            notes.extend(
                AddLayer(write.dataset_id, resource["id"], resource["url"], url_type(resource))
                for resource in resources_to_import(write.old, new, settings)
            )
    return notes


def to_record(note: Notification) -> str:
    """A notification as JSON, to be parked in Redis."""
    return json.dumps({"kind": note.kind, "fields": dataclasses.asdict(note)})


def from_record(record: str) -> Notification | None:
    """A parked notification; None (logged) when the record is not one this version knows."""
    try:
        data = json.loads(record)
        return KINDS[data["kind"]](**data["fields"])
    except (ValueError, KeyError, TypeError) as error:
        log.error("hdxrq: a parked notification could not be read and is dropped: %r", error)
        return None


def deliver(notes: list[Notification], settings: ExtensionSettings) -> None:
    """Send the parked notifications first (a few), then these; log and count those hdxrq does not take.

    Those hdxrq would take a moment later (no answer, 502/503/504) are parked (:mod:`.pending`), with every
    one after them: once hdxrq has not answered, the rest are not tried, so a save waits for at most one
    timeout however many notifications it caused. While parked ones remain, new ones queue behind them.
    """
    client = HdxrqClient(settings)
    try:
        if resend(client, pending.RESEND_PER_SAVE):
            _send(client, notes)
        else:
            pending.park([to_record(note) for note in notes])
    finally:
        client.close()


def resend(client: HdxrqClient, most: int | None = None) -> bool:
    """Send up to ``most`` parked notifications (all when None), oldest first; whether none is left.

    One that fails again in a way worth retrying goes back to the head and stops the round; one hdxrq
    refuses is logged, counted and dropped (it would be refused again).
    """
    sent = 0
    while most is None or sent < most:
        record = pending.take()
        if record is None:
            return True
        sent += 1
        note = from_record(record)
        if note is None:
            continue
        try:
            note.send(client)
        except HdxrqError as error:
            if error.retryable:
                pending.put_back(record)
                return False
            _count_failure(note, error)
    return pending.count() == 0


def _send(client: HdxrqClient, notes: list[Notification]) -> None:
    for position, note in enumerate(notes):
        try:
            note.send(client)
        except HdxrqError as error:
            _count_failure(note, error)
            if error.retryable:
                for later in notes[position + 1 :]:
                    _count_failure(later, error)
                pending.park([to_record(parked) for parked in notes[position:]])
                return


def _count_failure(note: Notification, error: HdxrqError) -> None:
    parked = " (parked, to be sent again)" if error.retryable else ""
    log.warning("hdxrq: %s for dataset %s failed: %s%s", note.kind, note.dataset_id, error, parked)
    failures.record(note.kind, str(error))
