"""Storage: schema migrations, connections, and the queries the roles share."""

from livinglab.storage._db import (
    CHANNEL_DIRTY,
    CHANNEL_EVENTS,
    CHANNEL_REGISTRY,
    CHANNEL_REPLAY,
    AsyncGuardedConnection,
    GuardedConnection,
    connect,
    connect_async,
    create_async_pool,
    create_pool,
    describe_error,
    extend_deadline,
    listen_until_stopped,
    shutdown_connection,
)
from livinglab.storage.migrate import check_schema, current_version, latest_version, migrate, uses_timescaledb

__all__ = [
    "CHANNEL_DIRTY",
    "CHANNEL_EVENTS",
    "CHANNEL_REGISTRY",
    "CHANNEL_REPLAY",
    "AsyncGuardedConnection",
    "GuardedConnection",
    "check_schema",
    "connect",
    "connect_async",
    "create_async_pool",
    "create_pool",
    "current_version",
    "describe_error",
    "extend_deadline",
    "latest_version",
    "listen_until_stopped",
    "migrate",
    "shutdown_connection",
    "uses_timescaledb",
]
