"""The database server a benchmark runs against, as the environment configures it.

The server is the one given (a URL to any database on it), else LIVINGLAB_TEST_DATABASE_URL like the tests, else a
PostgreSQL cluster of the benchmark's own in a temporary directory (`livinglab.launch.PostgresCluster`, binaries from
LIVINGLAB_TEST_PG_BINDIR or wherever `livinglab.launch.find_bindir` finds them), destroyed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from livinglab import launch


def configured_bindir() -> Path | None:
    """LIVINGLAB_TEST_PG_BINDIR, when set."""
    configured = os.environ.get("LIVINGLAB_TEST_PG_BINDIR")
    return Path(configured) if configured else None


@contextmanager
def database_server(configured: str | None = None) -> Iterator[str]:
    """A server URL: `configured`, else LIVINGLAB_TEST_DATABASE_URL, else a cluster of our own for the duration."""
    configured = configured or os.environ.get("LIVINGLAB_TEST_DATABASE_URL")
    with launch.database_server(configured, bindir=configured_bindir()) as url:
        yield url
