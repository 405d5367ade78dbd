"""The core's exceptions.

    LivinglabError
    ├── ConfigurationError      a setting is missing or malformed
    └── StorageError            the database refused or could not be reached
        ├── SchemaVersionError  the schema is older or newer than this code
        └── MigrationError      a migration could not be applied

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
