"""The worker class every ``./hdxrq.py worker`` runs.

It is RQ's forking worker (a crashing job cannot take the worker down) plus the project's start-up:
the process runtime is built from the settings, and each slice's start-up hooks run once (for example,
sweeping temporary directories left by a killed worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rq import Worker
from rq.utils import import_attribute

from . import runtime

log = logging.getLogger(__name__)

STARTUP_HOOKS: tuple[str, ...] = ()
"""Dotted paths of ``hook(runtime) -> None`` functions run when a worker starts."""


class HdxWorker(Worker):
    """RQ's forking worker with the project's runtime and start-up hooks."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        rt = runtime.current()
        for path in STARTUP_HOOKS:
            hook: Callable[[runtime.Runtime], None] = import_attribute(path)  # type: ignore[assignment]
            try:
                hook(rt)
            except Exception:
                log.exception("worker start-up hook %s failed", path)
        super().bootstrap(*args, **kwargs)
