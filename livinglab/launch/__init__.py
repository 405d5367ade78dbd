"""Launchers the tests and the benchmarks share: PostgreSQL clusters of their own, scratch databases, and platform
roles as separate processes.

Nothing here reads LIVINGLAB_ variables: callers pass what their own settings say (the tests and the benchmarks read
LIVINGLAB_TEST_DATABASE_URL and LIVINGLAB_TEST_PG_BINDIR themselves).
"""

from livinglab.launch._databases import (
    create_database,
    create_migrated_database,
    database_url,
    drop_database,
    scratch_database,
    temporary_database,
    unique_name,
)
from livinglab.launch._postgres import PostgresCluster, database_server, find_bindir, has_timescaledb
from livinglab.launch._roles import RoleProcess, platform_settings, started

__all__ = [
    "PostgresCluster",
    "RoleProcess",
    "create_database",
    "create_migrated_database",
    "database_server",
    "database_url",
    "drop_database",
    "find_bindir",
    "has_timescaledb",
    "platform_settings",
    "scratch_database",
    "started",
    "temporary_database",
    "unique_name",
]
