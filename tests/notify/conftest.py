"""Fixtures of the notification tests: a migrated database per test, API keys, and a client of the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.api import Keys, api_client, make_keys


@pytest.fixture
def keys(fresh_database_url: str) -> Keys:
    return make_keys(fresh_database_url)


@pytest.fixture
def client(fresh_database_url: str) -> Iterator[TestClient]:
    with api_client(fresh_database_url, response_cache_s=0) as c:
        yield c
