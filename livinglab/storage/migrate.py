"""Versioned schema migrations.

Migrations are the SQL files in `livinglab/storage/migrations/`, named `NNNN_description.sql` and applied in
order, each in its own transaction, under an advisory lock (so several services may start at once). A migration
may have companions that run right after it in the same transaction:

- `NNNN_description.timescaledb.sql` when the database uses TimescaleDB;
- `NNNN_description.plain.sql` when it does not.

Whether a database uses TimescaleDB is decided once, by the first migration, and recorded in `platform_info`; later
migrations follow that choice. Every service calls `check_schema` at start and refuses to run on a schema that is
older (run `livinglab migrate`) or newer (upgrade the code) than the one it was written for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

from livinglab.errors import MigrationError, SchemaVersionError
from livinglab.settings import TimescaleMode

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(timescaledb|plain))?\.sql$")
_LOCK_ID = 0x6C6C6162  # "llab": the advisory lock that serialises migrations
_CHUNK_PLACEHOLDER = ":chunk_interval"

Variant = Literal["timescaledb", "plain"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    timescaledb_sql: str | None = None
    plain_sql: str | None = None


def load_migrations() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    files: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in resources.files("livinglab.storage.migrations").iterdir():
        match = _NAME_RE.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        variant = match.group(3) or "main"
        if variant == "main":
            if version in names:
                raise MigrationError(f"two migrations share version {version:04d}")
            names[version] = match.group(2)
        files.setdefault(version, {})[variant] = entry.read_text(encoding="utf-8")
    migrations = []
    for version in sorted(files):
        if version not in names:
            raise MigrationError(f"migration {version:04d} has companions but no main file")
        parts = files[version]
        migrations.append(
            Migration(version, names[version], parts["main"], parts.get("timescaledb"), parts.get("plain"))
        )
    return migrations


def latest_version() -> int:
    """The schema version this code is written for."""
    return load_migrations()[-1].version


def current_version(conn: psycopg.Connection) -> int:
    """The schema version of the database behind `conn` (0 for an empty database)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def uses_timescaledb(conn: psycopg.Connection) -> bool:
    """Whether the schema was created with TimescaleDB hypertables."""
    exists = conn.execute("SELECT to_regclass('platform_info') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return False
    row = conn.execute("SELECT value FROM platform_info WHERE key = 'timescaledb'").fetchone()
    return bool(row and row[0] == "true")


def check_schema(conn: psycopg.Connection) -> int:
    """Raise `SchemaVersionError` unless the database is at exactly this code's schema version."""
    found, expected = current_version(conn), latest_version()
    if found < expected:
        raise SchemaVersionError(
            f"database schema is at version {found}, this code needs {expected}: run `livinglab migrate`",
            found=found,
            expected=expected,
        )
    if found > expected:
        raise SchemaVersionError(
            f"database schema is at version {found}, newer than this code ({expected}): upgrade livinglab",
            found=found,
            expected=expected,
        )
    return found


def migrate(
    conninfo: str,
    *,
    timescaledb: TimescaleMode = TimescaleMode.AUTO,
    chunk_interval: str = "1 day",
    target: int | None = None,
) -> list[int]:
    """Apply the pending migrations up to `target` (default: all). Returns the versions applied."""
    applied: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            _bootstrap(conn)
            done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            use_timescale = _decide_timescaledb(conn, timescaledb, first_run=not done)
            for migration in load_migrations():
                if migration.version in done or (target is not None and migration.version > target):
                    continue
                _apply(conn, migration, use_timescale, chunk_interval)
                applied.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


def _bootstrap(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            variant text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    conn.execute("CREATE TABLE IF NOT EXISTS platform_info (key text PRIMARY KEY, value text NOT NULL)")


def _decide_timescaledb(conn: psycopg.Connection, mode: TimescaleMode, *, first_run: bool) -> bool:
    if not first_run:
        return uses_timescaledb(conn)
    use = False
    if mode is not TimescaleMode.OFF:
        use = _try_create_timescaledb(conn)
        if mode is TimescaleMode.REQUIRE and not use:
            raise MigrationError(
                "LIVINGLAB_TIMESCALEDB=require but the timescaledb extension cannot be created "
                "(is it installed and in shared_preload_libraries?)"
            )
    conn.execute(
        "INSERT INTO platform_info (key, value) VALUES ('timescaledb', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        ("true" if use else "false",),
    )
    log.info("schema will use %s", "TimescaleDB hypertables" if use else "plain PostgreSQL tables")
    return use


def _try_create_timescaledb(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return False
    # CREATE EXTENSION on a server that did not preload the library ends the session with FATAL, so look first:
    # a preloaded timescaledb registers its `timescaledb.*` settings in every session.
    preloaded = conn.execute("SELECT count(*) FROM pg_settings WHERE name LIKE 'timescaledb.%'").fetchone()
    if not preloaded or not preloaded[0]:
        log.warning("timescaledb is installed but not in shared_preload_libraries; using plain PostgreSQL")
        return False
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning("timescaledb is installed but cannot be created (%s); using plain PostgreSQL", exc)
        return False
    return True


def _apply(conn: psycopg.Connection, migration: Migration, use_timescale: bool, chunk_interval: str) -> None:
    variant: Variant = "timescaledb" if use_timescale else "plain"
    companion = migration.timescaledb_sql if use_timescale else migration.plain_sql
    log.info("applying migration %04d_%s (%s)", migration.version, migration.name, variant)
    try:
        with conn.transaction():
            conn.execute(migration.sql.encode())
            if companion:
                text = companion.replace(_CHUNK_PLACEHOLDER, sql.Literal(chunk_interval).as_string(conn))
                conn.execute(text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                (migration.version, migration.name, variant),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
