"""Fixtures of the API tests: a database per module, API keys of each scope, and a client of a running app."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.api import Keys, api_client, make_keys
from tests.support.cities import TwoCities, seed_two_cities


@pytest.fixture(scope="module")
def keys(api_database_url: str) -> Keys:
    return make_keys(api_database_url)


@pytest.fixture(scope="module")
def client(api_database_url: str) -> Iterator[TestClient]:
    with api_client(api_database_url) as c:
        yield c


@pytest.fixture(scope="module")
def two_cities(api_database_url: str) -> TwoCities:
    """The module's database seeded with two cities (tests/support/cities.py)."""
    with psycopg.connect(api_database_url) as conn:
        return seed_two_cities(conn)


@pytest.fixture(scope="module")
def cities_client(api_database_url: str, two_cities: TwoCities) -> Iterator[TestClient]:
    """A client of the two cities, without the response cache (each check reads what the one before wrote)."""
    with api_client(api_database_url, response_cache_s=0) as c:
        yield c
