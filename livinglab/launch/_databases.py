"""Scratch databases on a PostgreSQL server: created (from a template, or migrated), named uniquely, dropped."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from livinglab.settings import TimescaleMode
from livinglab.storage import migrate


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name` (keeps host, port, user and query such as a socket host)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def unique_name(prefix: str = "llt") -> str:
    """A database name no other process or run picks: the prefix, this process id and random hex."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """CREATE DATABASE `name` (a copy of `template` when given); returns its URL."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE `name`, cutting its open connections; nothing happens when it does not exist."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def temporary_database(server_url: str, prefix: str = "llt", *, template: str | None = None) -> Iterator[str]:
    """A new database with a unique name (a copy of `template` when given), dropped on the way out; yields its URL."""
    name = unique_name(prefix)
    url = create_database(server_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(server_url, name)


def create_migrated_database(server_url: str, name: str, *, timescaledb: TimescaleMode = TimescaleMode.AUTO) -> str:
    """A new database `name` with the current schema (TimescaleDB as `timescaledb` says); returns its URL."""
    url = create_database(server_url, name)
    migrate(url, timescaledb=timescaledb)
    return url


def scratch_database(server_url: str, prefix: str, timescaledb: TimescaleMode = TimescaleMode.OFF) -> tuple[str, str]:
    """A new migrated database with a unique name: (name, url). Drop it with `drop_database(server_url, name)`."""
    name = unique_name(prefix)
    return name, create_migrated_database(server_url, name, timescaledb=timescaledb)
