"""Ingest helpers: batches built from real messages, ingesters (in a thread or as `python -m livinglab ingest`),
publishers that count what the broker acknowledged, and a collector of rejection notices."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest import Ingester, IngestSettings
from ingest.batch import Batch, BatchBuilder, Message
from ingest.registry import SensorDirectory
from ingest.rows import Limits
from ingest.writer import BatchWriter
from livinglab.embedded import LOOPBACK
from tests.support.roles import running

PREFIX = "livinglab/v1"
_mids = itertools.count(1)


def ten_minutes_ago() -> float:
    """The start of the minute ten minutes ago: readings at that time plus a few seconds share one window, and are
    neither in the future nor too old."""
    return math.floor(time.time() / 60) * 60 - 600


def message(sensor_id: str, payload: bytes, *, kind: str = "air", received_at_s: float | None = None) -> Message:
    return Message(
        f"{PREFIX}/jakarta/{kind}/{sensor_id}", payload, next(_mids) % 65535 + 1, 1, received_at_s or time.time()
    )


class Harness:
    """A batch builder and writer on one database, as the service wires them."""

    def __init__(self, url: str, *, limits: Limits | None = None, allowed_lateness_s: float = 7200.0) -> None:
        self.writer = BatchWriter(url, allowed_lateness_s=allowed_lateness_s)
        self.sensors = SensorDirectory(url, lookup_connection=self.writer.connection)
        self.sensors.load(self.writer.connection())
        self.builder = BatchBuilder(prefix=PREFIX, sensors=self.sensors, limits=limits or Limits())

    def build(self, messages: Sequence[Message]) -> Batch:
        return self.builder.build(messages)

    def close(self) -> None:
        self.writer.close()


def mqtt_client(client_id: str, *, clean: bool = True, protocol: int = mqtt.MQTTv311) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=clean if protocol != mqtt.MQTTv5 else None,
    )


def publish_all(
    port: int,
    messages: Sequence[tuple[str, bytes]],
    *,
    qos: int = 1,
    host: str = LOOPBACK,
    client_id: str | None = None,
    rate_per_s: float | None = None,
    chunk: int = 200,
) -> None:
    """Publish and wait until the broker acknowledged every message; with `rate_per_s`, at about that many messages
    a second, waiting for the acknowledgements chunk by chunk."""
    client = mqtt_client(client_id or f"pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(chunk)
    client.connect(host, port)
    client.loop_start()
    started = time.monotonic()
    try:
        for i in range(0, len(messages), chunk):
            infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages[i : i + chunk]]
            for info in infos:
                info.wait_for_publish(timeout=60)
                assert info.is_published()
            ahead = started + (i + chunk) / rate_per_s - time.monotonic() if rate_per_s else 0.0
            if ahead > 0:
                time.sleep(ahead)
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def ingesting(**settings: Any) -> Iterator[Ingester]:
    """An in-process ingester, connected before the body runs."""
    ingester = Ingester(IngestSettings(**{"batch_interval_ms": 20, "error_notice_interval_s": 0, **settings}))
    with running(ingester):
        assert ingester.wait_connected(30), "the ingester did not connect"
        yield ingester


class Notices:
    """Collects messages on the `/errors` topics under a prefix."""

    def __init__(self, port: int, prefix: str) -> None:
        self.received: list[tuple[str, dict[str, Any], int, bool]] = []
        self._subscribed = threading.Event()
        self.client = mqtt_client(f"notices-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(LOOPBACK, port)
        self.client.subscribe(f"{prefix}/+/+/+/errors", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((msg.topic, json.loads(msg.payload), msg.qos, bool(msg.retain)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LoadPublisher:
    """Publishes single-reading messages at a steady rate with QoS 1 and records which the broker acknowledged.

    Reading i of sensor s is `{"ts": base + i / 100, "pm25": i % 1000}`, so every reading has its own key and value.
    The session is persistent (fixed id, clean_session false), so after a broker restart paho resends what was in
    flight; only readings whose PUBACK arrived count as acknowledged.
    """

    def __init__(self, port: int, prefix: str, sensors: list[str], *, rate_per_s: float, base_ts: float) -> None:
        self.prefix = prefix
        self.sensors = sensors
        self.rate_per_s = rate_per_s
        self.base_ts = base_ts
        self._sent: list[tuple[tuple[str, int], mqtt.MQTTMessageInfo]] = []
        self._stop = threading.Event()
        self.client = mqtt_client(f"load-{time.monotonic_ns()}", clean=False)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 2)  # type: ignore[arg-type]
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="load")

    def payload(self, i: int) -> bytes:
        return orjson.dumps({"ts": round(self.base_ts + i / 100, 2), "pm25": i % 1000})

    def _run(self) -> None:
        interval = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            for sensor in self.sensors:
                info = self.client.publish(f"{self.prefix}/jakarta/air/{sensor}", self.payload(i), qos=1)
                self._sent.append(((sensor, i), info))
            i += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    @property
    def sent(self) -> int:
        return len(self._sent)

    @property
    def acknowledged(self) -> set[tuple[str, int]]:
        # Not is_published(): it raises for a message published while disconnected, which paho still sends (and
        # marks published) after reconnecting.
        return {key for key, info in self._sent if info._published}

    def start(self) -> LoadPublisher:
        self._thread.start()
        return self

    def stop(self, *, settle_s: float = 10.0) -> None:
        """Stop publishing and give in-flight messages time to be acknowledged."""
        self._stop.set()
        self._thread.join(timeout=10)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and not all(info._published for _, info in self._sent[-200:]):
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()

    def expected_values(self) -> dict[tuple[str, float], float]:
        """(sensor_id, ts) -> value of every acknowledged reading."""
        return {(s, round(self.base_ts + i / 100, 2)): float(i % 1000) for s, i in self.acknowledged}


class IngesterProcess:
    """`python -m livinglab ingest` as a child process, configured through LIVINGLAB_* variables."""

    def __init__(self, log_path: Path, **settings: Any) -> None:
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIVINGLAB_")}
        self.env.update({f"LIVINGLAB_{k.upper()}": str(v) for k, v in settings.items()})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> IngesterProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livinglab", "ingest"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to acknowledge, commit or say goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""
