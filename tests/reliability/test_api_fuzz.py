"""schemathesis against the OpenAPI document of the API served by uWSGI (``./hdxrq.py serve``).

Every operation of ``/openapi.json`` is exercised with generated valid and invalid parameters and bodies,
through the examples, coverage, fuzzing and stateful phases, with an admin token so that the admin
endpoints are reached too. Passing means: no 5xx answer, and every answer matches what the document says
(status codes, content types, schemas, headers such as ``Allow`` on 405). The number of cases is printed.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_ADMIN_TOKEN

from .conftest import Proc, serve_api

ST = str(ROOT / ".venv" / "bin" / "st")
MAX_EXAMPLES = 40
SEED = 20261123
CHECKS = "all"
EXCLUDED = [
    # Bodies CKAN sends are not described in the document (views keep their own contract validation), so
    # a body the generator believes valid (often none at all) is rightly refused with 400.
    "positive_data_acceptance",
]


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "HDXRQ_SCHEDULER_ALLOWED_ACTIONS": "hdx_test_action"}


def test_schemathesis_finds_no_server_error_or_schema_violation(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    api, base = serve_api(spawn)
    argv = [ST, "run", f"{base}/openapi.json", "--checks", CHECKS, "--exclude-checks", ",".join(EXCLUDED)]
    argv += ["--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "2", "--no-color"]
    argv += ["--header", f"Authorization: Bearer {TEST_ADMIN_TOKEN}", "--generation-database", "none"]
    argv += ["--request-timeout", "30", "--max-failures", "50"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(report)

    cases = re.search(r"(\d+) generated", report)
    print(f"\nschemathesis: {cases.group(1) if cases else '?'} test cases generated")
    assert done.returncode == 0, report[-20000:]
    assert cases and int(cases.group(1)) >= 300, report[-3000:]
    assert "Tested: 0" not in report
    assert api.alive()
    assert "Traceback" not in api.output(), api.output()[-5000:]


NO_TOKEN_CHECKS = "not_a_server_error,no_success_without_the_token"
NO_TOKEN_ENV = {"SCHEMATHESIS_HOOKS": "tests.reliability.no_token_check", "PYTHONPATH": str(ROOT)}


def _run_without_a_token(base: str, tmp_path: Path, *options: str) -> tuple[int, str]:
    argv = [ST, "run", f"{base}/openapi.json", "--checks", NO_TOKEN_CHECKS, "--seed", str(SEED), "--no-color"]
    argv += ["--generation-database", "none", "--request-timeout", "30", *options]
    done = subprocess.run(
        argv, cwd=tmp_path, env={**os.environ, **NO_TOKEN_ENV}, capture_output=True, text=True, timeout=600
    )
    return done.returncode, done.stdout + done.stderr


def test_without_a_token_only_operations_open_to_anyone_succeed(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    """From 127.0.0.1, outside HDXRQ_ALLOWED_NETWORKS, and without the admin token: no operation but those
    open to anyone answers 2xx (tests/reliability/no_token_check.py), whatever schemathesis sends."""
    _, guarded = serve_api(spawn, {"HDXRQ_ALLOWED_NETWORKS": "10.9.9.0/24"})
    code, report = _run_without_a_token(guarded, tmp_path, "--max-examples", "15", "--workers", "2")
    (tmp_path / "schemathesis-no-token.txt").write_text(report)
    cases = re.search(r"(\d+) generated", report)
    print(f"\nschemathesis without a token: {cases.group(1) if cases else '?'} test cases generated")
    assert code == 0, report[-20000:]
    assert cases and int(cases.group(1)) >= 100, report[-3000:]

    # The check is no formality: with every address allowed, CKAN's notifications succeed without a token.
    _, open_api = serve_api(spawn)
    code, report = _run_without_a_token(
        open_api, tmp_path, "--include-path", "/api/create-change-events", "--max-examples", "5", "--phases", "fuzzing"
    )
    assert code != 0 and "without a token" in report, report[-3000:]
