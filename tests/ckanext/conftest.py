"""Fixtures for the tests that drive a real CKAN 2.12 with ckanext-hdxrq (see ``ckansite.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from tests.ckanext.ckansite import FakeSolr, require_ckan_venv
from tests.conftest import _claim_database, _release_database


@pytest.fixture(scope="module")
def fake_solr() -> Iterator[FakeSolr]:
    require_ckan_venv()
    with FakeSolr() as solr:
        yield solr  # type: ignore[misc]


@pytest.fixture
def ckan_redis_db(redis_admin: Redis) -> Iterator[int]:
    """A Redis database of CKAN's own, claimed like the tests' own databases."""
    db = _claim_database(redis_admin)
    yield db
    _release_database(redis_admin, db)
