"""The static checks CI runs with the suite: ruff over the repository, mypy (strict) over core/ and the doors.

What mypy checks is configured in pyproject.toml (``[tool.mypy]``): ``core/`` and every slice's
``service.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_core_and_the_doors() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.search(r"Success: no issues found in (\d+) source files", result.stdout)
    in_scope = [*ROOT.glob("core/*.py"), *ROOT.glob("*/service.py")]
    assert checked and int(checked.group(1)) == len(in_scope), result.stdout
