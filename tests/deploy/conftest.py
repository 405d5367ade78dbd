"""Fixtures for the deployment tests: a PostgreSQL server with TimescaleDB preloaded (tests/support/timescale.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import create_database, drop_database, unique_name
from tests.support.timescale import TimescalePostgres, find_timescaledb_bindir


@pytest.fixture(scope="session")
def timescale_server_url() -> Iterator[str]:
    """A session's own PostgreSQL with TimescaleDB preloaded; skips (saying why) where the extension is missing."""
    bindir, reason = find_timescaledb_bindir()
    if bindir is None:
        pytest.skip(reason)
    server = TimescalePostgres(bindir)
    try:
        server.start()
    except Exception as exc:
        log = server.log_tail()
        server.stop()
        pytest.fail(f"could not start PostgreSQL with TimescaleDB from {bindir}: {exc}\n{log}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def timescale_database_url(timescale_server_url: str) -> Iterator[str]:
    """An empty database on the TimescaleDB server, dropped after the test."""
    name = unique_name("llt_tsdb")
    url = create_database(timescale_server_url, name)
    try:
        yield url
    finally:
        drop_database(timescale_server_url, name)
