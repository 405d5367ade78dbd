"""A whole platform for the browser tests: `livinglab up --simulate` as a child process, as an operator runs it.

It gets its own database (copied from the session's migrated template), its own Mosquitto and data directory, and
a free API port; the test reads the API URL and the admin key from the lines `livinglab up` prints.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.embedded import MosquittoBroker, free_port

REPO = Path(__file__).resolve().parents[2]


class RunningPlatform:
    """`livinglab up --simulate` on loopback; `log_path` receives everything it prints."""

    def __init__(self, database_url: str, broker: MosquittoBroker, data_dir: Path, log_path: Path) -> None:
        self.database_url = database_url
        self.broker = broker
        self.data_dir = data_dir
        self.log_path = log_path
        self.base_url = ""
        self.admin_key = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._pump_thread: threading.Thread | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        env = {
            **os.environ,
            "LIVINGLAB_DATABASE_URL": self.database_url,
            "LIVINGLAB_MQTT_URL": self.broker.url,
            "LIVINGLAB_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("LIVINGLAB_PUBLIC_READ", None)
        argv = [sys.executable, "-m", "livinglab", "up", "--simulate", "--port", str(free_port())]
        self._process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True, name="platform-output")
        self._pump_thread.start()
        deadline = time.monotonic() + timeout_s
        while not (self.base_url and self.admin_key):
            if self._process.poll() is not None:
                raise RuntimeError(f"livinglab up exited with {self._process.returncode}; see {self.log_path}")
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"livinglab up printed no API line in {timeout_s} s; see {self.log_path}") from None
            if line.startswith("API: "):
                self.base_url = line.removeprefix("API: ").strip()
            elif line.startswith("admin key: "):
                self.admin_key = line.removeprefix("admin key: ").strip()

    def _pump(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for line in self._process.stdout:
                log.write(line)
                log.flush()
                self._lines.put(line)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    # -- talking to it ---------------------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """The JSON body of an authenticated GET."""
        response = httpx.get(
            f"{self.base_url}{path}",
            params={k: v for k, v in params.items() if v is not None},
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list endpoint, following `next_cursor`."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(path, cursor=cursor, **params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(
            f"{self.base_url}{path}", json=body, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def publish(self, topic: str, payload: Any) -> None:
        """Publish one JSON message with QoS 1 and wait for the broker's acknowledgement."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"browser-test-{time.monotonic_ns()}")
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            client.publish(topic, json.dumps(payload).encode(), qos=1).wait_for_publish(timeout=10)
        finally:
            client.disconnect()
            client.loop_stop()


def poll(check: Callable[[], tuple[bool, Any]], *, timeout_s: float, interval_s: float = 1.0) -> Any:
    """Call `check` until it answers (True, value); return the value, or fail with the last answer."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"not reached within {timeout_s} s; last: {last!r}")


@contextmanager
def running_platform(
    database_url: str, broker: MosquittoBroker, data_dir: Path, log_path: Path
) -> Iterator[RunningPlatform]:
    platform = RunningPlatform(database_url, broker, data_dir, log_path)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


@dataclass
class Dashboard:
    """A dashboard page in its own browser context, with what the page logged and requested."""

    page: Any
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, query: str = "", hash_: str = "") -> None:
        self.page.goto(f"{self.base_url}/{query}{hash_}")
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)
