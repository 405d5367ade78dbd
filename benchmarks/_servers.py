"""The database server a benchmark runs against, and scratch databases on it.

The server is the one given (a URL to any database on it), else LIVINGLAB_TEST_DATABASE_URL like the tests, else an
embedded one (pgserver) in a temporary directory that is stopped at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from livinglab.embedded import EmbeddedPostgres
from livinglab.settings import TimescaleMode
from livinglab.storage import migrate
from tests.support.databases import create_database, unique_name


@contextmanager
def database_server(configured: str | None = None) -> Iterator[str]:
    """A server URL: `configured`, else LIVINGLAB_TEST_DATABASE_URL, else an embedded server for the duration."""
    configured = configured or os.environ.get("LIVINGLAB_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="livinglab-bench-")) / "pgdata")
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def scratch_database(server_url: str, prefix: str, timescaledb: TimescaleMode = TimescaleMode.OFF) -> tuple[str, str]:
    """A new migrated database on `server_url`: (name, url). Drop it with `tests.support.databases.drop_database`."""
    name = unique_name(prefix)
    url = create_database(server_url, name)
    migrate(url, timescaledb=timescaledb)
    return name, url
