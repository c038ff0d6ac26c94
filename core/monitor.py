"""The monitor: ``{MONITOR_URL}/workers.json`` for CKAN's checker and rq-dashboard behind the admin token.

A browser opens the dashboard by itself: a request without the token is answered 401 with a Basic
challenge, the browser asks for a user name and password, and the admin token as the password (any user
name) lets it in. ``Authorization: Bearer <token>`` works too, for scripts.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from rq import Worker
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from .auth import is_admin_request, is_admin_token
from .connections import SERIALIZER

if TYPE_CHECKING:
    from .runtime import Runtime
    from .settings import CoreSettings

DASHBOARD_REALM = "hdxrq monitor"


def workers_summary(runtime: Runtime) -> list[dict[str, object]]:
    """Workers with their state and queues; no job arguments (they may be user data)."""
    workers = Worker.all(connection=runtime.redis, serializer=SERIALIZER)
    summary: list[dict[str, object]] = [
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


def local_worker_names(runtime: Runtime, hostname: str | None = None) -> list[str]:
    """Names of the workers registered in Redis from ``hostname`` (this host by default).

    A worker's registration lives as long as its heartbeats keep it (``HDX_REDIS_WORKER_TTL``), so a
    worker that died or hangs drops out of this list.
    """
    host = hostname or socket.gethostname()
    workers = Worker.all(connection=runtime.redis, serializer=SERIALIZER)
    return sorted(worker.name for worker in workers if worker.hostname == host)


def init_app(app: Flask, runtime: Runtime) -> None:
    """Mount ``workers.json`` and rq-dashboard under ``MONITOR_URL``."""
    prefix = runtime.settings.api.monitor_url.rstrip("/")
    status = Blueprint("monitor", __name__)

    @status.get(f"{prefix}/workers.json")
    def workers_json() -> ResponseReturnValue:
        """The workers and their state (CKAN's service checker reads it).

        Answers `{"workers": [...], "state": "ok"}`: each worker's name, state, queues, current job, last
        heartbeat and job counts (never job arguments). The dashboard beside it needs the admin token.
        """
        rt = current_app.extensions["hdx"]
        return jsonify(workers=workers_summary(rt), state="ok")

    app.register_blueprint(status)
    _mount_dashboard(app, runtime, prefix)


def _mount_dashboard(app: Flask, runtime: Runtime, prefix: str) -> None:
    import rq_dashboard
    from rq_dashboard.web import config as dashboard_config
    from rq_dashboard.web import setup_rq_connection

    dashboard_config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = (runtime.settings.redis.url,)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    setup_rq_connection(app)

    @app.before_request
    def _dashboard_admin_only() -> None:
        if request.blueprint == rq_dashboard.blueprint.name and not dashboard_allowed(runtime.settings):
            raise Unauthorized(
                "The dashboard needs an admin token: as the password (any user name) or as a Bearer token",
                www_authenticate=WWWAuthenticate("basic", {"realm": DASHBOARD_REALM, "charset": "UTF-8"}),
            )

    app.register_blueprint(rq_dashboard.blueprint, url_prefix=prefix)


def dashboard_allowed(settings: CoreSettings) -> bool:
    """Whether the request carries an admin token, as a Bearer token or as a Basic password."""
    if is_admin_request(settings):
        return True
    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        return False
    return is_admin_token(settings, credentials.password or "")
