"""The architecture's rules (``.importlinter``), checked on every run: core imports no slice, the slices
import each other only through their doors, app alone composes them, and no package has an import cycle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grimp
import pytest

from tests.conftest import ROOT

LINT_IMPORTS = str(ROOT / ".venv" / "bin" / "lint-imports")
PACKAGES = ("app", "core", "importapi", "analyticsapi", "eventsapi", "scheduler", "tiles", "processes")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts over the packages in ``tree``."""
    argv = [LINT_IMPORTS, "--config", str(ROOT / ".importlinter"), "--no-cache"]
    return subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_two_packages_import_each_other() -> None:
    """Within a package ``.importlinter`` forbids cycles; between packages (doors included) this does."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = [
        (first, second)
        for index, first in enumerate(PACKAGES)
        for second in PACKAGES[index + 1 :]
        if graph.chain_exists(first, second, as_packages=True) and graph.chain_exists(second, first, as_packages=True)
    ]
    assert cycles == []


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/extra.py", "import importapi.service", "core knows no slice"),
        ("importapi/extra.py", "from app import slices", "core knows no slice"),  # the layers contract
        ("processes/extra.py", "from importapi import tasks", "only through its door"),
        ("importapi/extra.py", "from tiles import prerender", "only through its door"),
        ("analyticsapi/extra.py", "from . import api", "no import cycles"),
    ],
)
def test_each_contract_catches_what_it_forbids(tmp_path: Path, module: str, line: str, broken: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / module).write_text(f"{line}\n")
    if module.startswith("analyticsapi"):  # and api imports extra: a cycle
        api = tmp_path / "analyticsapi" / "api.py"
        api.write_text(api.read_text() + "\nfrom . import extra  # noqa\n")

    done = lint_imports(tmp_path)

    assert done.returncode == 1, done.stdout[-3000:]
    assert f"{broken}" in done.stdout.split("Broken contracts")[-1], done.stdout[-3000:]
