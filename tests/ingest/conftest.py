"""Fixtures of the ingest tests: a batch builder and writer on a fresh database (`tests/support/ingest.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ingest import Harness


@pytest.fixture
def harness(fresh_database_url: str) -> Iterator[Harness]:
    h = Harness(fresh_database_url)
    try:
        yield h
    finally:
        h.close()
