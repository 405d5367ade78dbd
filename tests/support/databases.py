"""Fresh PostgreSQL databases for tests, on a given server or an embedded one."""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg

from livinglab.storage import migrate


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name` (keeps host, port, user and query such as a socket host)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def unique_name(prefix: str = "llt") -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_migrated_database(server_url: str, name: str) -> str:
    url = create_database(server_url, name)
    migrate(url)
    return url
