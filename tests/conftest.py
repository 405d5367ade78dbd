"""Fixtures: a real PostgreSQL and a real Mosquitto.

PostgreSQL: the server in `LIVINGLAB_TEST_DATABASE_URL` (a URL to any database on it, for example
`postgresql://postgres@127.0.0.1:5432/postgres`), or else a cluster of the session's own in a temporary directory,
on a free loopback port (`livinglab.launch.PostgresCluster`; `own_postgres` is such a cluster per test).
Each test session migrates a template database once; `database_url` is one database for the session and
`fresh_database_url` a new one per test, both copied from the template and dropped afterwards.

Mosquitto: `mqtt_broker` is one broker for the session; `own_broker` a broker per test that the test may stop,
crash and restart. Both listen on free ports on 127.0.0.1 with a generated config; `topic_prefix` is unique per
test, so tests sharing a broker never see each other's messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from livinglab.embedded import MosquittoBroker
from livinglab.launch import (
    PostgresCluster,
    create_migrated_database,
    database_server,
    drop_database,
    find_bindir,
    started,
    temporary_database,
    unique_name,
)
from tests.support.api import Keys, api_client, make_keys
from tests.support.postgres import configured_bindir, configured_server_url


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    with database_server(configured_server_url(), bindir=configured_bindir()) as url:
        yield url


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    name = unique_name("llt_template")
    create_migrated_database(pg_server_url, name)
    try:
        yield name
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    with temporary_database(pg_server_url, "llt_session", template=template_database) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """One migrated database for the tests of a module."""
    with temporary_database(pg_server_url, "llt_module", template=template_database) as url:
        yield url


@pytest.fixture
def fresh_database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    with temporary_database(pg_server_url, "llt", template=template_database) as url:
        yield url


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    with temporary_database(pg_server_url, "llt_empty") as url:
        yield url


@pytest.fixture(scope="module")
def api_database_url(module_database_url: str) -> str:
    """The module's database, as the API tests name it."""
    return module_database_url


@pytest.fixture(scope="module")
def keys(api_database_url: str) -> Keys:
    """API keys of each scope in the module's database."""
    return make_keys(api_database_url)


@pytest.fixture(scope="module")
def client(api_database_url: str) -> Iterator[TestClient]:
    """A client of an app running on the module's database (in this process)."""
    with api_client(api_database_url) as c:
        yield c


def _require_mosquitto() -> None:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    _require_mosquitto()
    with started(MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))) as (broker,):
        yield broker


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    _require_mosquitto()
    with started(MosquittoBroker(tmp_path / "mosquitto")) as (broker,):
        yield broker


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}/livinglab/v1"


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of the test's own (never the shared one), which the test may stop and start again."""
    bindir, reason = find_bindir(configured_bindir())
    if bindir is None:
        pytest.skip(f"{reason}; set LIVINGLAB_TEST_PG_BINDIR")
    server = PostgresCluster(bindir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
