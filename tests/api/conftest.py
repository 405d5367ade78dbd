"""Fixtures of the API tests besides those of tests/conftest.py (the module's database, keys of each scope and a
client of a running app): the module's database seeded with two cities."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.api import api_client
from tests.support.cities import TwoCities, seed_two_cities


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
