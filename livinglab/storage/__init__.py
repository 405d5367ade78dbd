"""Storage: schema migrations, connections, and the queries the roles share."""

from livinglab.storage._db import (
    CHANNEL_DIRTY,
    CHANNEL_EVENTS,
    CHANNEL_REGISTRY,
    CHANNEL_REPLAY,
    connect,
    create_async_pool,
    create_pool,
    shutdown_connection,
)
from livinglab.storage.migrate import check_schema, current_version, latest_version, migrate, uses_timescaledb

__all__ = [
    "CHANNEL_DIRTY",
    "CHANNEL_EVENTS",
    "CHANNEL_REGISTRY",
    "CHANNEL_REPLAY",
    "check_schema",
    "connect",
    "create_async_pool",
    "create_pool",
    "current_version",
    "latest_version",
    "migrate",
    "shutdown_connection",
    "uses_timescaledb",
]
