"""The monitor: ``{MONITOR_URL}/workers.json`` for CKAN's checker and rq-dashboard behind the admin token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from rq import Worker

from .auth import check_admin
from .connections import SERIALIZER

if TYPE_CHECKING:
    from .runtime import Runtime


def workers_summary(runtime: Runtime) -> list[dict[str, object]]:
    """Workers with their state and queues; no job arguments (they may be user data)."""
    workers = Worker.all(connection=runtime.redis, serializer=SERIALIZER)
    summary = [
        {
            "name": worker.name,
            "queues": worker.queue_names(),
            "state": str(worker.get_state()),
            "current_job_id": worker.get_current_job_id(),
            "last_heartbeat": worker.last_heartbeat.isoformat() if worker.last_heartbeat else None,
            "successful_job_count": worker.successful_job_count,
            "failed_job_count": worker.failed_job_count,
        }
        for worker in workers
    ]
    return sorted(summary, key=lambda item: str(item["name"]))


def init_app(app: Flask, runtime: Runtime) -> None:
    """Mount ``workers.json`` and rq-dashboard under ``MONITOR_URL``."""
    prefix = runtime.settings.monitor_url.rstrip("/")
    status = Blueprint("monitor", __name__)

    @status.get(f"{prefix}/workers.json")
    def workers_json() -> ResponseReturnValue:
        rt = current_app.extensions["hdx"]
        return jsonify(workers=workers_summary(rt), state="ok")

    app.register_blueprint(status)
    _mount_dashboard(app, runtime, prefix)


def _mount_dashboard(app: Flask, runtime: Runtime, prefix: str) -> None:
    import rq_dashboard
    from rq_dashboard.web import config as dashboard_config
    from rq_dashboard.web import setup_rq_connection

    dashboard_config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = (runtime.settings.redis_url,)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    setup_rq_connection(app)

    @app.before_request
    def _dashboard_admin_only() -> None:
        if request.blueprint == rq_dashboard.blueprint.name:
            check_admin()

    app.register_blueprint(rq_dashboard.blueprint, url_prefix=prefix)
