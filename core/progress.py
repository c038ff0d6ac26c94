"""Progress reporting from inside jobs: stage and percent, stored on the RQ job record.

Job status endpoints read ``job.meta["progress"]``, ``job.meta["stage"]`` and ``job.meta["message"]``.
Outside a job (the ``./hdxrq.py import`` command, unit tests) reports go to an optional listener only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

from rq import get_current_job

log = logging.getLogger(__name__)

Listener = Callable[[str, float | None, str | None], None]
_listener: ContextVar[Listener | None] = ContextVar("progress_listener", default=None)
MIN_INTERVAL_SEC = 0.5
_last_saved: dict[str, float] = {}


def report_progress(stage: str, percent: float | None = None, message: str | None = None) -> None:
    """Record that the current job is at ``stage`` (``downloading``, ``loading``...), ``percent`` 0-100."""
    listener = _listener.get()
    if listener is not None:
        listener(stage, percent, message)
    job = get_current_job()
    if job is None:
        return
    now = time.monotonic()
    same_stage = job.meta.get("stage") == stage
    if same_stage and now - _last_saved.get(job.id, 0.0) < MIN_INTERVAL_SEC and percent not in (0, 100):
        return  # throttle frequent updates within a stage (downloads report per chunk)
    _last_saved[job.id] = now
    job.meta.update(stage=stage, progress=None if percent is None else round(min(max(percent, 0), 100), 1))
    if message is not None:
        job.meta["message"] = message
    try:
        job.save_meta()
    except Exception:  # progress is best effort: never fail a job over it
        log.debug("could not save progress", exc_info=True)


def listen(listener: Listener | None) -> object:
    """Send this context's progress reports to ``listener`` (for example a progress bar)."""
    return _listener.set(listener)
