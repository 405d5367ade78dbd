"""The command line as a user runs it: `livinglab up --simulate`, `livinglab keys create`, `livinglab migrate`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from livinglab.embedded import free_port
from livinglab.storage.keys import hash_key
from tests.support.api import metric_samples
from tests.support.roles import wait_until

pytestmark = pytest.mark.integration

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{32,}$")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVINGLAB_")}
    env.update({"LIVINGLAB_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def _livinglab(*args: str) -> list[str]:
    return [sys.executable, "-m", "livinglab", *args]


def test_keys_create_prints_only_a_key(fresh_database_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        _livinglab("keys", "create", "--scope", "sensors:write"),
        env=_env(tmp_path, LIVINGLAB_DATABASE_URL=fresh_database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert KEY_RE.match(lines[0])
    with psycopg.connect(fresh_database_url) as conn:
        rows = conn.execute("SELECT key_hash, scope FROM api_keys").fetchall()
        plain = conn.execute("SELECT count(*) FROM api_keys WHERE key_prefix = %s", (lines[0],)).fetchone()
    assert rows == [(hash_key(lines[0]), "sensors:write")]
    assert plain == (0,)  # only an 8-character prefix is kept beside the hash


def test_migrate_is_idempotent(empty_database_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, LIVINGLAB_DATABASE_URL=empty_database_url)
    first = subprocess.run(_livinglab("migrate"), env=env, capture_output=True, text=True, timeout=60, check=True)
    second = subprocess.run(_livinglab("migrate"), env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "applied migrations: 1" in first.stderr
    assert "none (up to date)" in second.stderr


def test_up_simulate_serves_aggregates_then_stops_cleanly(fresh_database_url: str, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        _livinglab("up", "--simulate"),  # the port from LIVINGLAB_API_PORT, as --port would give it
        env=_env(tmp_path, LIVINGLAB_DATABASE_URL=fresh_database_url, LIVINGLAB_API_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        api_line = process.stdout.readline().strip()
        key_line = process.stdout.readline().strip()
        assert api_line == f"API: http://127.0.0.1:{port}"
        key = key_line.removeprefix("admin key: ")
        assert key_line.startswith("admin key: ")
        assert KEY_RE.match(key)

        def aggregates() -> list[dict[str, object]]:
            # One page per quantity: the simulator backfills a day first, more than a page of 1-minute windows.
            items: list[dict[str, object]] = []
            for quantity in ("pm25", "pm10"):
                response = httpx.get(
                    f"http://127.0.0.1:{port}/v1/sensors/aq-menteng-01/aggregates",
                    params={"window": "1m", "quantity": quantity},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=5,
                )
                assert response.status_code == 200, response.text
                page: list[dict[str, object]] = response.json()["items"]
                if not page:
                    return []
                items += page
            return items

        items = wait_until(aggregates, timeout_s=90, interval_s=1)
        assert all(isinstance(i["count"], int) and i["count"] >= 1 for i in items)
        assert {i["quantity"] for i in items} >= {"pm25", "pm10"}
        health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).json()
        assert health["status"] == "ok"
        # The demo city comes with the default alarm rules.
        rules = httpx.get(
            f"http://127.0.0.1:{port}/v1/alarm-rules", headers={"Authorization": f"Bearer {key}"}, timeout=5
        ).json()["items"]
        assert {r["rule_id"] for r in rules} >= {"ispu-unhealthy", "ispu-very-unhealthy", "sensor-silent"}
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0
    time.sleep(0.2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)


@pytest.mark.parametrize("freeze", [True, False])
def test_api_server_freezes_its_startup_objects(fresh_database_url: str, tmp_path: Path, freeze: bool) -> None:
    port = free_port()
    env = _env(tmp_path, LIVINGLAB_DATABASE_URL=fresh_database_url, LIVINGLAB_GC_FREEZE=str(freeze).lower())
    process = subprocess.Popen(_livinglab("api", "--port", str(port)), env=env, stderr=subprocess.DEVNULL)
    try:

        def metrics() -> str | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return None

        text = wait_until(metrics, timeout_s=60, interval_s=0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    (frozen,) = metric_samples(text, "livinglab_api_gc_frozen_objects")
    count = frozen.value
    # The application, FastAPI, pydantic and psycopg make some 100,000 objects before the server starts.
    assert count > 20_000 if freeze else count == 0


def test_readme_lists_every_setting() -> None:
    from livinglab.cli import settings_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = readme.index("\n<!-- settings-table:end -->")
    assert readme[start:end] == settings_table(), "README settings table is stale: paste `livinglab settings`"
