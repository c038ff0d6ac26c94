"""ckanext-hdxrq's own tests, run by CKAN's pytest plugin in CKAN's virtualenv (``.venv-ckan``).

They need CKAN importable, so they cannot run in this suite's interpreter: this test runs them as a
subprocess with an ini file naming a database and a Redis database of their own (CKAN's ``clean_db``
empties the whole database) and the Solr stand-in, and fails with their report if any of them fails.
``HDXRQ_CKANEXT_PYTEST_ARGS`` adds arguments (``-k callback``, ``-x``) when working on the extension.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.ckanext.ckansite import CKAN_PYTHON, EXTENSION_DIR, FakeSolr, ckan_database, ckan_environment, write_ini
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

RUN_TIMEOUT_SEC = 600


def test_extension_tests_pass_against_ckan(tmp_path: Path, fake_solr: FakeSolr, ckan_redis_db: int) -> None:
    with ckan_database() as database:
        ini = write_ini(
            tmp_path / "test.ini",
            database=database,
            site_url="http://test.ckan.net",
            solr_url=fake_solr.solr_url,
            redis_db=ckan_redis_db,
            **{"ckan.plugins": "hdxrq hdxrq_view", "ckan.auth.create_unowned_dataset": "true"},
        )
        extra = shlex.split(os.environ.get("HDXRQ_CKANEXT_PYTEST_ARGS", ""))
        done = subprocess.run(
            [str(CKAN_PYTHON), "-m", "pytest", str(EXTENSION_DIR), f"--ckan-ini={ini}", "-q", "--tb=short", *extra],
            cwd=ROOT,
            env=ckan_environment(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SEC,
        )
    report = done.stdout[-12000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) > 0, report
    print(done.stdout.strip().splitlines()[-1])  # shown with -rA / -s: how many of the extension's tests ran
