"""Fixtures of the security tests: the module's database (tests/conftest.py) under the name these tests use."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def database(module_database_url: str) -> str:
    return module_database_url
