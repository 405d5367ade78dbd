"""Fixtures: a real PostgreSQL and a real Mosquitto.

PostgreSQL: the server in `LIVINGLAB_TEST_DATABASE_URL` (a URL to any database on it, for example
`postgresql://postgres@127.0.0.1:5432/postgres`), or else an embedded server (pgserver) in a temporary directory.
Each test session migrates a template database once; `database_url` is one database for the session and
`fresh_database_url` a new one per test, both copied from the template and dropped afterwards.

Mosquitto: `mqtt_broker` is one broker for the session; `own_broker` a broker per test that the test may stop,
crash and restart. Both listen on free ports on 127.0.0.1 with a generated config; `topic_prefix` is unique per
test, so tests sharing a broker never see each other's messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from livinglab.embedded import EmbeddedPostgres, MosquittoBroker
from tests.support.databases import create_database, create_migrated_database, drop_database, unique_name
from tests.support.postgres import OwnPostgres, find_bindir


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("LIVINGLAB_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "pgdata")
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


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
    name = unique_name("llt_session")
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def fresh_database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    name = unique_name("llt")
    url = create_database(pg_server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    name = unique_name("llt_empty")
    url = create_database(pg_server_url, name)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


def _require_mosquitto() -> None:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (apt install mosquitto)")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    _require_mosquitto()
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    _require_mosquitto()
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}/livinglab/v1"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of the test's own (never the shared one), which the test may stop and start again."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found; set LIVINGLAB_TEST_PG_BINDIR")
    server = OwnPostgres(bindir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
