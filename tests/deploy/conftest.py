"""Fixtures for the deployment tests: a PostgreSQL server with TimescaleDB preloaded (`livinglab.launch`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from livinglab.launch import PostgresCluster, find_bindir, temporary_database
from tests.support.postgres import configured_bindir


@pytest.fixture(scope="session")
def timescale_server_url() -> Iterator[str]:
    """A session's own PostgreSQL with TimescaleDB preloaded; skips (saying why) where the extension is missing."""
    bindir, reason = find_bindir(configured_bindir(), timescaledb=True)
    if bindir is None:
        pytest.skip(reason)
    server = PostgresCluster(bindir, timescaledb=True)
    try:
        server.start()
    except Exception as exc:
        log = server.log_tail()
        server.destroy()
        pytest.fail(f"could not start PostgreSQL with TimescaleDB from {bindir}: {exc}\n{log}")
    try:
        yield server.url
    finally:
        server.destroy()


@pytest.fixture
def timescale_database_url(timescale_server_url: str) -> Iterator[str]:
    """An empty database on the TimescaleDB server, dropped after the test."""
    with temporary_database(timescale_server_url, "llt_tsdb") as url:
        yield url
