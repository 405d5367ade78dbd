"""API helpers: keys of each scope, the app in a TestClient or served by uvicorn on a free port (for streaming
clients), an SSE reader, and checks of list pages and problem details."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api import ApiSettings, create_app
from api.server import server_config
from livinglab.embedded import free_port
from livinglab.storage.keys import Scope, create_key


@dataclass(frozen=True)
class Keys:
    read: str
    write: str
    admin: str

    def header(self, scope: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, scope)}"}


def admin_key(url: str, name: str = "test-admin") -> str:
    """A new admin key in the database at `url` (committed)."""
    with psycopg.connect(url) as conn:
        key = create_key(conn, Scope.ADMIN, name=name)
        conn.commit()
    return key


def make_keys(url: str) -> Keys:
    with psycopg.connect(url) as conn:
        keys = Keys(
            read=create_key(conn, Scope.READ, name="test-read"),
            write=create_key(conn, Scope.SENSORS_WRITE, name="test-write"),
            admin=create_key(conn, Scope.ADMIN, name="test-admin"),
        )
        conn.commit()
    return keys


@contextmanager
def api_client(database_url: str, **settings: Any) -> Iterator[TestClient]:
    """A TestClient of an app on `database_url`; rate limiting off unless a test sets it."""
    settings.setdefault("rate_limit_per_s", 0)
    app = create_app(ApiSettings(database_url=database_url, **settings))
    with TestClient(app) as client:
        yield client


def walk(client: TestClient, path: str, params: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor; checks that each page is well-formed."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= params.get("limit", 100)
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert body["items"], "a page with a next_cursor must not be empty"
    raise AssertionError("pagination did not end")


def metric_samples(text: str, family: str) -> list[Sample]:
    """The samples of one metric family in a `/metrics` page (a histogram's `_bucket`, `_count` and `_sum` too)."""
    return [
        sample for found in text_string_to_metric_families(text) if found.name == family for sample in found.samples
    ]


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@contextmanager
def serving(database_url: str, **settings: Any) -> Iterator[str]:
    """Serve the API; yields its base URL. Streams are cut at shutdown after a short grace period."""
    settings.setdefault("rate_limit_per_s", 0)
    port = free_port()
    api_settings = ApiSettings(database_url=database_url, **settings)
    app = create_app(api_settings)
    # The configuration `livinglab api` serves with (request head limits, no proxy headers), on a free port.
    config = server_config(app, api_settings, host="127.0.0.1", port=port, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class SseReader:
    """Reads SSE messages from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next_message(self) -> dict[str, str]:
        """The next message with an event or data field (comments and retry lines are skipped)."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields or "event" in fields:
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                fields.setdefault("comments", "")
                fields["comments"] += line[1:].strip() + "\n"
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    def next_comment(self) -> str:
        for line in self._lines:
            if line.startswith(":"):
                return line[1:].strip()
        raise EOFError("the stream ended")
