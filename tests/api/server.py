"""The API served by uvicorn on a free port in a background thread (for streaming clients)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from api import ApiSettings, create_app
from api.server import server_config
from livinglab.embedded import free_port


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
