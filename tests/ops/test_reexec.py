"""``./hdxrq.py`` re-execs under the project's ``.venv`` only when started by a plain interpreter and only
into a ``.venv`` made on this machine (never into one copied in with the source, e.g. into an image)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.version import __version__

ROOT = Path(__file__).resolve().parents[2]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
"""The interpreter the test virtualenv was made from: a plain one, as a developer's ``python3``."""


def venv_chosen(python: str, project: Path) -> str:
    """What ``venv_to_enter()`` of the ``hdxrq.py`` in ``project`` answers under ``python``."""
    code = f"import sys; sys.path.insert(0, {str(project)!r}); import hdxrq; print(hdxrq.venv_to_enter())"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "hdxrq.py", tmp_path / "hdxrq.py")
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True, timeout=60)
    return tmp_path


def test_a_plain_interpreter_enters_a_venv_made_here(project: Path) -> None:
    assert sys.prefix != sys.base_prefix, "the suite runs in a virtualenv"
    assert venv_chosen(BASE_PYTHON, project) == str(project / ".venv" / "bin" / "python")


def test_a_venv_made_elsewhere_is_not_entered(project: Path) -> None:
    config = project / ".venv" / "pyvenv.cfg"
    config.write_text(config.read_text().replace("home = ", "home = /nonexistent/build-machine"))
    assert venv_chosen(BASE_PYTHON, project) == "None"


def test_a_venv_whose_interpreter_is_not_here_is_not_entered(project: Path) -> None:
    for name in ("python", "python3"):
        link = project / ".venv" / "bin" / name
        link.unlink()
        os.symlink("/nonexistent/bin/python3.11", link)
    assert venv_chosen(BASE_PYTHON, project) == "None"


def test_an_interpreter_that_is_already_a_virtualenvs_is_kept(project: Path) -> None:
    assert venv_chosen(sys.executable, project) == "None"


def test_the_version_from_a_plain_interpreter() -> None:
    result = subprocess.run(
        [BASE_PYTHON, str(ROOT / "hdxrq.py"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hdxrq {__version__}"
