"""The CKAN plugins: ``hdxrq`` (geopreview imports, change events, the callback action) and ``hdxrq_view``.

``hdxrq`` records every dataset create, update and delete in the open transaction (see :mod:`.outbox`):
before COMMIT it reads the dataset as written, after COMMIT it hands hdxrq the old and new versions, asks
it to import every geo resource whose file is new or changed, including resources created inside
``package_create`` (which CKAN reports only as a dataset write), and to drop the layers of geo resources
that are gone (deleted, purged, or no longer in a geo format).

``hdxrq_view`` shows an imported layer on a MapLibre map inside CKAN's resource page, with MapLibre, the
map script and the vector tiles all served by hdxrq (``ckanext.hdxrq.public_url``).
"""

from __future__ import annotations

import logging
from typing import Any

import ckan.model as model
import ckan.plugins as plugins
import ckan.plugins.toolkit as toolkit
from ckan.model.meta import create_local_session

from . import actions, cli, notify, shapeinfo
from .outbox import DatasetWrite, TransactionOutbox
from .settings import ExtensionSettings, declare_options

log = logging.getLogger(__name__)


def current_settings() -> ExtensionSettings:
    return ExtensionSettings.from_config(toolkit.config)


@toolkit.blanket.config_declarations(declare_options)
class HdxrqPlugin(plugins.SingletonPlugin):
    """Tells hdxrq about committed dataset writes and receives its geopreview results."""

    plugins.implements(plugins.IConfigurable)
    plugins.implements(plugins.IActions)
    plugins.implements(plugins.IAuthFunctions)
    plugins.implements(plugins.IPackageController, inherit=True)
    plugins.implements(plugins.IClick)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outbox: TransactionOutbox[notify.Notification] = TransactionOutbox(self._prepare, self._deliver)

    # IConfigurable

    def configure(self, config: Any) -> None:
        for session_factory in (model.Session, create_local_session):
            self.outbox.install(session_factory)

    # IClick

    def get_commands(self) -> list[Any]:
        return cli.get_commands()

    # IActions, IAuthFunctions

    def get_actions(self) -> dict[str, Any]:
        return {
            "hdx_resource_update_metadata": actions.hdx_resource_update_metadata,
            "hdxrq_status_show": actions.hdxrq_status_show,
            "package_update": actions.remembering_old(self.outbox),
            "package_delete": actions.remembering_old(self.outbox),
            "dataset_purge": actions.remembering_old(self.outbox, records_write=True),
        }

    def get_auth_functions(self) -> dict[str, Any]:
        return {
            "hdx_resource_update_metadata": actions.hdx_resource_update_metadata_auth,
            "hdxrq_status_show": actions.hdxrq_status_show_auth,
        }

    # IPackageController (called inside the transaction, before COMMIT)

    def after_dataset_create(self, context: Any, pkg_dict: dict[str, Any]) -> None:
        self._record(context, pkg_dict.get("id"), created=True)

    def after_dataset_update(self, context: Any, pkg_dict: dict[str, Any]) -> None:
        self._record(context, pkg_dict.get("id"), created=False)

    def after_dataset_delete(self, context: Any, pkg_dict: dict[str, Any]) -> None:
        self._record(context, pkg_dict.get("id"), created=False)

    def _record(self, context: Any, name_or_id: str | None, *, created: bool) -> None:
        if context.get(actions.QUIET) or not name_or_id:
            return
        package = model.Package.get(name_or_id)
        if package is not None:
            self.outbox.record_write(actions.session_of(context), package.id, context.get("user"), created=created)

    # the outbox's two steps

    def _prepare(self, writes: list[DatasetWrite]) -> list[notify.Notification]:
        """Before COMMIT: read each written dataset as the transaction leaves it."""
        settings = current_settings()
        notes: list[notify.Notification] = []
        for write in writes:
            new: dict[str, Any] | None
            try:
                new = actions.show_dataset(write.dataset_id, {"user": write.username})
            except toolkit.ObjectNotFound:
                new = None  # purged within the transaction
            notes.extend(notify.notifications_for(write, new, settings))
        return notes

    def _deliver(self, notes: list[notify.Notification]) -> None:
        """After COMMIT: tell hdxrq."""
        notify.deliver(notes, current_settings())


@toolkit.blanket.config_declarations(declare_options)
class HdxrqViewPlugin(plugins.SingletonPlugin):
    """A resource view: the resource's imported layer on a MapLibre map, tiles from hdxrq."""

    plugins.implements(plugins.IConfigurer, inherit=True)
    plugins.implements(plugins.IResourceView, inherit=True)

    def update_config(self, config: Any) -> None:
        toolkit.add_template_directory(config, "templates")

    def info(self) -> dict[str, Any]:
        return {
            "name": "hdxrq_view",
            "title": toolkit._("Map"),
            "icon": "map",
            "default_title": toolkit._("Map"),
            "iframed": True,
            "always_available": False,
        }

    def can_view(self, data_dict: dict[str, Any]) -> bool:
        """Resources of the formats hdxrq imports (the map appears once the import has succeeded)."""
        return current_settings().is_geo(data_dict["resource"])

    def setup_template_variables(self, context: Any, data_dict: dict[str, Any]) -> dict[str, Any]:
        resource = data_dict["resource"]
        service_url = current_settings().public_url
        return {
            "hdxrq_map": shapeinfo.map_config(resource, service_url),
            "hdxrq_latest": shapeinfo.latest(resource),
            "hdxrq_url": service_url,
        }

    def view_template(self, context: Any, data_dict: dict[str, Any]) -> str:
        return "hdxrq/map_view.html"
