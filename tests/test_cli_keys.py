"""`livinglab keys create --city`, `keys list` and `keys revoke`, run through the CLI's own entry point."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from livinglab.cli import main
from livinglab.storage.keys import find_key

pytestmark = pytest.mark.integration


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def keys_cli(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("LIVINGLAB_DATABASE_URL", fresh_database_url)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["keys", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_create_with_cities_prints_only_the_key_and_limits_it(keys_cli: Cli, fresh_database_url: str) -> None:
    code, out, _ = keys_cli("create", "--scope", "read", "--city", "bandung", "--city", "cimahi", "--city", "bandung")
    assert code == 0
    [key] = out.splitlines()
    with psycopg.connect(fresh_database_url) as conn:
        found = find_key(conn, key)
    assert found is not None
    assert found.cities == frozenset({"bandung", "cimahi"})
    assert found.scope.value == "read"


def test_list_then_revoke(keys_cli: Cli, fresh_database_url: str) -> None:
    _, limited, _ = keys_cli("create", "--scope", "admin", "--city", "bandung", "--name", "ops bandung")
    _, unlimited, _ = keys_cli("create", "--scope", "read")
    code, out, _ = keys_cli("list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split("\t") == ["key_id", "prefix", "scope", "cities", "name", "created_at"]
    table = {row.split("\t")[1]: row.split("\t") for row in rows}
    assert table[limited.strip()[:8]][2:5] == ["admin", "bandung", "ops bandung"]
    assert table[unlimited.strip()[:8]][2:4] == ["read", "*"]
    assert not any(limited.strip() in row or unlimited.strip() in row for row in rows)  # never the key itself

    key_id = table[limited.strip()[:8]][0]
    assert keys_cli("revoke", key_id)[:2] == (0, f"revoked key {key_id}\n")
    with psycopg.connect(fresh_database_url) as conn:
        assert find_key(conn, limited.strip()) is None
        assert find_key(conn, unlimited.strip()) is not None
    code, _, err = keys_cli("revoke", key_id)
    assert code == 2
    assert "no live key" in err


def test_a_bad_city_is_refused(keys_cli: Cli) -> None:
    code, out, err = keys_cli("create", "--scope", "read", "--city", "Bandung Raya")
    assert (code, out) == (2, "")
    assert "--city" in err
