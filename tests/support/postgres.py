"""The PostgreSQL server the tests use, as the environment configures it.

`LIVINGLAB_TEST_DATABASE_URL`: a URL to any database on a server the tests may create databases on; unset, the
tests start a cluster of their own (`livinglab.launch.PostgresCluster`, on loopback TCP). `LIVINGLAB_TEST_PG_BINDIR`:
the PostgreSQL binaries for the clusters the tests start (else the ones `livinglab.launch.find_bindir` finds).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from livinglab.launch import create_database, drop_database, unique_name


def configured_server_url() -> str | None:
    return os.environ.get("LIVINGLAB_TEST_DATABASE_URL") or None


def configured_bindir() -> Path | None:
    configured = os.environ.get("LIVINGLAB_TEST_PG_BINDIR")
    return Path(configured) if configured else None


@contextlib.contextmanager
def scratch_copy(server_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database with a unique name starting with `prefix` (a copy of `template`, else empty) on the server
    at `server_url`, dropped on exit. Yields its URL."""
    name = unique_name(prefix)
    url = create_database(server_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(server_url, name)
