"""Logging set-up shared by the API and the workers, configured once per process from ``logging.yml``.

Every record carries ``job_id`` (``-`` outside a job), and configured secrets are masked in every message
and every traceback, in both formats.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .settings import CoreSettings

LOGGING_YML = Path(__file__).resolve().parent.parent / "logging.yml"
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_secrets: tuple[str, ...] = ()


class JobContextFilter(logging.Filter):
    """Adds ``job_id``: the id of the RQ job being run by this process, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            from rq import get_current_job

            job = get_current_job()
            record.job_id = job.id if job is not None else "-"
        return True


class SecretFilter(logging.Filter):
    """Replaces configured secret values in messages and arguments with ``********``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            masked = mask_secrets(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


class TextFormatter(logging.Formatter):
    """The text format, with tracebacks and stack dumps masked like messages (an exception's text and the
    values in its frames' lines can hold a configured secret)."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return mask_secrets(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return mask_secrets(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, job_id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = mask_secrets(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = mask_secrets(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


SHORT_SECRET = 8
"""Secrets shorter than this are masked only as whole words (a dev password ``gis`` must not mangle
``registries``); longer ones wherever they appear."""


def mask_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret replaced by ``********``."""
    for secret in secrets if secrets is not None else _secrets:
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, "********")
        elif secret:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "********", text)
    return text


def configure_logging(settings: CoreSettings, overrides: str | None = None) -> None:
    """Apply ``logging.yml`` with the settings' format, levels and secrets."""
    global _secrets
    _secrets = tuple(sorted(settings.secret_values(), key=len, reverse=True))
    config = yaml.safe_load(LOGGING_YML.read_text(encoding="utf-8"))
    config["handlers"]["console"]["formatter"] = settings.logging.format
    config["root"]["level"] = settings.logging.level
    for name, level in parse_levels(overrides or settings.logging.levels).items():
        config["loggers"].setdefault(name, {})["level"] = level
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def parse_levels(spec: str) -> dict[str, str]:
    """``"importapi=DEBUG,rq.worker=WARNING"`` → ``{"importapi": "DEBUG", "rq.worker": "WARNING"}``."""
    levels = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, level = item.partition("=")
        levels[name.strip()] = level.strip().upper()
    return levels


JOB_LOG_KEY = "hdxrq:job-log:{job_id}"
JOB_LOG_MAX_LINES = 1000


def job_log_key(job_id: str) -> str:
    return JOB_LOG_KEY.format(job_id=job_id)


class JobLogHandler(logging.Handler):
    """Keeps the lines logged inside each job in Redis, for ``GET /jobs/<id>/log``."""

    def __init__(self, retention_sec: int) -> None:
        super().__init__(level=logging.INFO)
        self.retention_sec = retention_sec
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.addFilter(SecretFilter())

    def emit(self, record: logging.LogRecord) -> None:
        from rq import get_current_job

        job = get_current_job()
        if job is None:
            return
        try:
            key = job_log_key(job.id)
            with job.connection.pipeline(transaction=False) as pipe:
                pipe.rpush(key, mask_secrets(self.format(record)))
                pipe.ltrim(key, -JOB_LOG_MAX_LINES, -1)
                pipe.expire(key, self.retention_sec)
                pipe.execute()
        except Exception:
            self.handleError(record)
