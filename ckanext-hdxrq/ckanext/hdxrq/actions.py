"""Actions: the callback hdxrq's workers call, the extension's status, and the dataset writes it watches.

* ``hdx_resource_update_metadata`` takes hdxrq's geopreview result (``id``, ``shape_info`` as a JSON
  string, ``batch_mode``) and appends it to the resource's ``shape_info`` history.
* ``hdxrq_status_show`` (sysadmins) shows the settings in effect and the notifications hdxrq did not take.
* ``package_update`` and ``package_delete`` are chained to keep the dataset as it was before the write
  (``resource_create``/``_update``/``_delete``, ``package_patch`` and ``package_revise`` go through
  ``package_update``). ``dataset_purge``, which calls no plugin hook, is chained to record the purge itself.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import ckan.authz as authz
import ckan.model as model
import ckan.plugins.toolkit as toolkit
from sqlalchemy.orm import Session, scoped_session

from . import failures, pending, shapeinfo
from .outbox import TransactionOutbox
from .settings import ExtensionSettings

QUIET = "hdxrq_quiet"
"""Context flag: this write tells hdxrq nothing (the callback's own write of ``shape_info``)."""

Action = Callable[[dict[str, Any], dict[str, Any]], Any]


def session_of(context: dict[str, Any]) -> Session:
    """The database session an action works in (CKAN's scoped ``model.Session`` unless the context says)."""
    session = context.get("session") or model.Session
    return session() if isinstance(session, scoped_session) else session


def show_dataset(dataset_id: str, context: dict[str, Any], *, for_update: bool = False) -> dict[str, Any]:
    """The dataset as ``package_show`` gives it, read from the database (not the search index)."""
    show_context = {"ignore_auth": True, "use_cache": False, "for_update": for_update, "user": context.get("user")}
    result: dict[str, Any] = toolkit.get_action("package_show")(show_context, {"id": dataset_id})
    return result


def remembering_old(outbox: TransactionOutbox[Any], *, records_write: bool = False) -> Action:
    """A chained action that keeps the dataset's state before the write it wraps (row locked till commit).

    ``records_write`` also records the write itself, for an action that calls no plugin hook
    (``dataset_purge``).
    """

    @toolkit.chained_action
    def action(original_action: Action, context: dict[str, Any], data_dict: dict[str, Any]) -> Any:
        name_or_id = data_dict.get("id") or data_dict.get("name")
        package = model.Package.get(name_or_id) if name_or_id and not context.get(QUIET) else None
        if package is not None:
            dataset_id, session = package.id, session_of(context)
            outbox.remember_old(session, dataset_id, lambda: show_dataset(dataset_id, context, for_update=True))
            if records_write:
                outbox.record_write(session, dataset_id, context.get("user"), created=False)
        return original_action(context, data_dict)

    return action


def hdx_resource_update_metadata(context: dict[str, Any], data_dict: dict[str, Any]) -> dict[str, Any]:
    """Append hdxrq's geopreview result to a resource's ``shape_info`` history (the last 10 are kept).

    :param id: the resource id
    :param shape_info: the result, a JSON string of an object with ``state`` (``success``, ``failure``
        or ``processing``), ``message``, ``layer_id`` and on success ``bounding_box`` and ``layer_fields``
    :param batch_mode: accepted for compatibility with HDX's CKAN and ignored
    :returns: the updated resource
    """
    resource_id = toolkit.get_or_bust(data_dict, "id")
    toolkit.check_access("hdx_resource_update_metadata", context, data_dict)
    try:
        result = shapeinfo.parse_result(data_dict.get("shape_info"))
    except ValueError as error:
        raise toolkit.ValidationError({"shape_info": [str(error)]}) from None
    resource = model.Resource.get(resource_id)
    if resource is None or resource.state == "deleted":
        raise toolkit.ObjectNotFound("Resource not found")
    # Lock the dataset (as resource_update does) before reading the history, so two results never race.
    model.Package.get(resource.package_id, for_update=True)
    model.Session.refresh(resource)
    now = datetime.datetime.now(datetime.UTC)
    history = shapeinfo.appended(resource.extras.get("shape_info"), result, now)
    patch_context = {key: value for key, value in context.items() if key in ("user", "auth_user_obj", "ignore_auth")}
    patch_context[QUIET] = True
    patched: dict[str, Any] = toolkit.get_action("resource_patch")(
        patch_context, {"id": resource_id, "shape_info": json.dumps(history)}
    )
    return patched


def hdx_resource_update_metadata_auth(context: dict[str, Any], data_dict: dict[str, Any]) -> dict[str, Any]:
    """Whoever may update the resource may record its geopreview result."""
    result: dict[str, Any] = authz.is_authorized("resource_update", context, {"id": data_dict.get("id")})
    return result


@toolkit.side_effect_free
def hdxrq_status_show(context: dict[str, Any], data_dict: dict[str, Any]) -> dict[str, Any]:
    """The extension's settings in effect (no token), the notifications hdxrq did not take, and how many
    of those are parked to be sent again.

    :returns: ``url``, ``public_url``, ``formats``, ``geopreview``, ``change_events``, ``pending``, ``failures``
        (count by kind: ``add-layer``, ``delete-one-layer``,
        ``create-change-events``) and ``last_failures`` (by kind)
    """
    toolkit.check_access("hdxrq_status_show", context, data_dict)
    settings = ExtensionSettings.from_config(toolkit.config)
    return {
        "url": settings.url,
        "public_url": settings.public_url,
        "formats": sorted(settings.formats),
        "geopreview": settings.geopreview,
        "change_events": settings.change_events,
        "pending": pending.count(),
        **failures.summary(),
    }


def hdxrq_status_show_auth(context: dict[str, Any], data_dict: dict[str, Any]) -> dict[str, Any]:
    """Sysadmins only (they pass every check without asking this function)."""
    return {"success": False, "msg": "Only sysadmins may see hdxrq's status"}
