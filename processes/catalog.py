"""The processes offered through OGC API – Processes, one per kind of work the slices do.

Each process names its inputs (a pydantic model: validation and the JSON Schema in its description come
from the same code), its queue, the job functions whose jobs belong to it (so jobs started by CKAN's own
endpoints show up under ``/jobs`` too) and the operation of the slice's door that submits one. The door
decides who may call it, checks the input and the queue's cap, as it does for CKAN's endpoint: a job
started here is exactly the job CKAN would have started, under the same rules. The input models only
describe and parse the OGC inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

import analyticsapi.service
import eventsapi.service
import importapi.service
import scheduler.service
from core.queues import QueueName

from .settings import ProcessesSettings

if TYPE_CHECKING:
    from rq.job import Job

    from core.auth import Caller
    from core.runtime import Runtime
    from core.settings import CoreSettings

RESOURCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$"


class Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeopreviewImportInputs(Inputs):
    resource_id: str = Field(pattern=RESOURCE_ID, description="CKAN resource id; the layer is named after it")
    dataset_id: str = Field("unknown", pattern=RESOURCE_ID, description="CKAN dataset id")
    url: str = Field(pattern=r"^https?://", max_length=4096, description="Where to download the GIS file")
    url_type: str = Field("", max_length=50, description="CKAN's url_type ('upload' for uploaded files)")


class ChangeDetectionInputs(Inputs):
    username: str | None = Field(None, max_length=200, description="Who changed the dataset")
    old_dataset_dict: dict[str, Any] | None = Field(None, description="The dataset before ({} on create)")
    new_dataset_dict: dict[str, Any] = Field(description="The dataset after the change")


class FileStructureCheckInputs(Inputs):
    dataset_id: str = Field(pattern=RESOURCE_ID)
    resource_id: str = Field(pattern=RESOURCE_ID)
    hxl_proxy_source_info_url: str = Field(pattern=r"^https?://", max_length=4096)
    fs_check_info: str = Field("[]", description="JSON string of the resource's fs_check_info history")


class AnalyticsSendInputs(Inputs):
    model_config = ConfigDict(extra="allow")
    event_name: str = Field(min_length=1, max_length=255)
    mixpanel_meta: dict[str, Any] = Field(default_factory=dict)
    ga_meta: dict[str, Any] = Field(default_factory=dict)
    mixpanel_tracking_id: str | None = None
    mixpanel_token: str | None = None
    send_mixpanel: bool = False
    send_ga: bool = False


class CkanCallInputs(Inputs):
    action: str = Field(pattern=r"^[a-z0-9_]+$", max_length=100, description="CKAN action name")
    method: str = Field("post", pattern=r"^(get|post|GET|POST)$")
    api_params: dict[str, Any] = Field(default_factory=dict, description="JSON body (POST) or query (GET)")


Submit = Callable[["Runtime", "Caller", Any], str]


@dataclass(frozen=True)
class Process:
    """One process of the catalogue."""

    id: str
    title: str
    description: str
    queue: QueueName
    inputs: type[Inputs]
    outputs: dict[str, dict[str, Any]]
    submit: Submit
    job_functions: tuple[str, ...]
    version: str = "1.0.0"
    keywords: tuple[str, ...] = field(default_factory=tuple)

    def input_descriptions(self) -> dict[str, dict[str, Any]]:
        """OGC input descriptions: title, schema and occurrence of each input."""
        schema = self.inputs.model_json_schema()
        required = set(schema.get("required", []))
        described = {}
        for name, prop in schema.get("properties", {}).items():
            described[name] = {
                "title": name.replace("_", " "),
                "description": prop.pop("description", ""),
                "schema": prop,
                "minOccurs": 1 if name in required else 0,
                "maxOccurs": 1,
            }
        return described


def _submit_import(rt: Runtime, caller: Caller, inputs: GeopreviewImportInputs) -> str:
    return importapi.service.request_import(
        rt, caller, inputs.dataset_id, inputs.resource_id, inputs.url, inputs.url_type
    )


def _submit_change_detection(rt: Runtime, caller: Caller, inputs: ChangeDetectionInputs) -> str:
    return eventsapi.service.accept_change_events(rt, caller, inputs.model_dump_json().encode())


def _submit_fs_check(rt: Runtime, caller: Caller, inputs: FileStructureCheckInputs) -> str:
    return eventsapi.service.request_file_structure_check(
        rt, caller, inputs.dataset_id, inputs.resource_id, inputs.hxl_proxy_source_info_url, inputs.fs_check_info
    )


def _submit_analytics(rt: Runtime, caller: Caller, inputs: AnalyticsSendInputs) -> str:
    return analyticsapi.service.submit_event(rt, caller, inputs.model_dump())


def _submit_ckan_call(rt: Runtime, caller: Caller, inputs: CkanCallInputs) -> str:
    return scheduler.service.call_now(rt, caller, inputs.action, inputs.method, inputs.api_params)


PROCESSES: tuple[Process, ...] = (
    Process(
        id="geopreview-import",
        title="Geopreview import",
        description="Download a GeoJSON, KML, KMZ, zipped Shapefile or GeoPackage, load it into PostGIS as the "
        "resource's layer and report its bounding box and fields to CKAN.",
        queue=QueueName.GEO,
        inputs=GeopreviewImportInputs,
        outputs={"result": {"title": "import outcome", "schema": {"type": "object"}}},
        submit=_submit_import,
        job_functions=("importapi.tasks.import_resource",),
        keywords=("gis", "postgis", "ogr2ogr"),
    ),
    Process(
        id="change-detection",
        title="Dataset change detection",
        description="Compare two versions of a CKAN dataset and write the change events to the event stream.",
        queue=QueueName.EVENT,
        inputs=ChangeDetectionInputs,
        outputs={"result": {"title": "events written", "schema": {"type": "object"}}},
        submit=_submit_change_detection,
        job_functions=("eventsapi.tasks.publish_change_events",),
    ),
    Process(
        id="file-structure-check",
        title="File structure check",
        description="Ask the HXL proxy for a spreadsheet's structure, compare it with the last check and report "
        "sheet changes to CKAN.",
        queue=QueueName.FS_CHECK,
        inputs=FileStructureCheckInputs,
        outputs={"result": {"title": "check outcome", "schema": {"type": "object"}}},
        submit=_submit_fs_check,
        job_functions=("eventsapi.tasks.check_file_structure",),
    ),
    Process(
        id="analytics-send",
        title="Analytics event",
        description="Buffer an analytics event for batched delivery to Mixpanel and GA4.",
        queue=QueueName.ANALYTICS,
        inputs=AnalyticsSendInputs,
        outputs={"result": {"title": "buffered", "schema": {"type": "object"}}},
        submit=_submit_analytics,
        job_functions=("analyticsapi.tasks.buffer_event", "processes.tasks.send_analytics_event"),
    ),
    Process(
        id="ckan-call",
        title="CKAN action call",
        description="Call a CKAN action with the service's token (for recurring calls use the scheduler API).",
        queue=QueueName.SCHEDULER,
        inputs=CkanCallInputs,
        outputs={"result": {"title": "CKAN's answer: status and duration", "schema": {"type": "object"}}},
        submit=_submit_ckan_call,
        job_functions=("scheduler.tasks.run_scheduled_call",),
    ),
)

BY_ID = {process.id: process for process in PROCESSES}
BY_FUNCTION = {function: process.id for process in PROCESSES for function in process.job_functions}


def process_of(job: Job) -> str | None:
    """The process a job belongs to, or None for internal jobs (callbacks, delivery ticks)."""
    try:
        return BY_FUNCTION.get(job.func_name)
    except Exception:  # a job whose function cannot be read is nobody's
        return None


def job_timeout(job: Job, settings: CoreSettings) -> int | None:
    """The per-process timeout (``HDXRQ_PROCESS_TIMEOUTS``) for a job, if one is set."""
    process_id = process_of(job)
    limits = ProcessesSettings.of(settings).timeouts
    return limits.get(process_id or "", limits.get("*")) if limits else None
