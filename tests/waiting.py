"""Waiting on conditions in tests (never on the clock alone)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

POLL_SEC = 0.05


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Re-check ``condition`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_SEC)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
