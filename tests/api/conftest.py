"""Fixtures of the API tests: a database per module, API keys of each scope, and a client of a running app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from livinglab.storage.keys import Scope, create_key
from tests.support.cities import TwoCities, seed_two_cities
from tests.support.databases import create_database, drop_database, unique_name


@dataclass(frozen=True)
class Keys:
    read: str
    write: str
    admin: str

    def header(self, scope: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, scope)}"}


@pytest.fixture(scope="module")
def api_database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """One migrated database for the tests of a module."""
    name = unique_name("llt_api")
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


def make_keys(url: str) -> Keys:
    with psycopg.connect(url) as conn:
        keys = Keys(
            read=create_key(conn, Scope.READ, name="test-read"),
            write=create_key(conn, Scope.SENSORS_WRITE, name="test-write"),
            admin=create_key(conn, Scope.ADMIN, name="test-admin"),
        )
        conn.commit()
    return keys


@pytest.fixture(scope="module")
def keys(api_database_url: str) -> Keys:
    return make_keys(api_database_url)


ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@contextmanager
def api_client(database_url: str, **settings: Any) -> Iterator[TestClient]:
    """A TestClient of an app on `database_url`; rate limiting off unless a test sets it."""
    settings.setdefault("rate_limit_per_s", 0)
    app = create_app(ApiSettings(database_url=database_url, **settings))
    with TestClient(app) as client:
        yield client


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


def walk(client: TestClient, path: str, params: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor; checks that each page is well-formed."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= params.get("limit", 100)
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert body["items"], "a page with a next_cursor must not be empty"
    raise AssertionError("pagination did not end")


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body
