"""The core's exceptions, and what happens to the database driver's.

The platform's own exceptions:

    LivinglabError
    ├── ConfigurationError      a setting is missing or malformed, or an installed package does not fit (the
    │                           ingester's paho hooks and an untested paho-mqtt)
    └── StorageError            the storage layer refused to go on with this database
        ├── SchemaVersionError  the schema is older or newer than this code
        └── MigrationError      a migration could not be applied (raised from the psycopg error)

Database errors are not wrapped: they stay psycopg's own, whose tree already says what happened and carries the
server's fields (`sqlstate`, `diag`), and which the roles' SQL meets on every connection they hold. The core adds
one, `livinglab.resilience.DatabaseTimeout`, a `psycopg.OperationalError` raised when the policy's deadline cut a
silent link. What happens to them is decided in one way in each place that catches them:

- roles retry work with a `livinglab.resilience.Backoff`; `livinglab.resilience.is_transient` tells an outage, a
  timeout or a lost race (retried quietly) from an error that would fail again (logged as an error; the ingester
  still retries, since a batch it gives up on would be lost);
- the API maps them to problem details once, in `api.problems` (503 for an unavailable or too slow database);
- `livinglab.storage.migrate` turns a failed migration into `MigrationError`, and the CLI reports any
  `LivinglabError` and exits with status 2.

Bad device input is never an exception: the ingester turns it into a rejection with a reason code.
"""

from __future__ import annotations


class LivinglabError(Exception):
    """Base of every exception the platform raises on purpose."""


class ConfigurationError(LivinglabError):
    """A setting is missing or malformed."""


class StorageError(LivinglabError):
    """The database refused an operation or could not be reached."""


class SchemaVersionError(StorageError):
    """The database schema is not the version this code expects."""

    def __init__(self, message: str, *, found: int, expected: int) -> None:
        super().__init__(message)
        self.found = found
        self.expected = expected


class MigrationError(StorageError):
    """A migration could not be applied."""
