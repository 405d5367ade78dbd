"""The PostgreSQL server the tests use, as the environment configures it.

`LIVINGLAB_TEST_DATABASE_URL`: a URL to any database on a server the tests may create databases on; unset, the
tests start a cluster of their own (`livinglab.launch.PostgresCluster`, on loopback TCP). `LIVINGLAB_TEST_PG_BINDIR`:
the PostgreSQL binaries for the clusters the tests start (else the ones `livinglab.launch.find_bindir` finds).
"""

from __future__ import annotations

import os
from pathlib import Path


def configured_server_url() -> str | None:
    return os.environ.get("LIVINGLAB_TEST_DATABASE_URL") or None


def configured_bindir() -> Path | None:
    configured = os.environ.get("LIVINGLAB_TEST_PG_BINDIR")
    return Path(configured) if configured else None
