"""The ingester: MQTT in, batches to PostgreSQL, acknowledgements only after COMMIT.

Threads: paho's network loop receives messages and queues them (the queue is bounded, so a stalled database
stops reading from the socket instead of growing memory); the batch thread decodes, writes one transaction per
batch, then acknowledges the batch's messages (paho `manual_ack=True`) and publishes rejection notices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.decode import Limits, Readings, Rejection, decode_payload
from ingest.settings import IngestSettings
from ingest.topics import parse_topic, subscription
from ingest.writer import Batch, RejectedMessage, write_batch
from livinglab.domain import RejectionReason
from livinglab.storage import check_schema, connect
from livinglab.storage.registry import RegistryEntry, load_registry

log = logging.getLogger(__name__)

_ERROR_NOTICE_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at_s: float


class Ingester:
    """One ingester process's worth of work. `run()` blocks until `stop()`."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_records=settings.max_records_per_message,
            max_clock_skew_s=settings.max_clock_skew_s,
            max_lateness_s=settings.max_lateness_s,
        )
        self._database_url = settings.require_database_url()
        self._mqtt_url = settings.require_mqtt_url()
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=max(2 * settings.batch_size, 100))
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._registry: dict[str, RegistryEntry] = {}
        self._registry_loaded_at = 0.0
        self._last_notice: dict[str, float] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self.client = self._make_client()

    # -- MQTT -------------------------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        v5 = self.settings.mqtt_protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if self._mqtt_url.username:
            client.username_pw_set(self._mqtt_url.username, self._mqtt_url.password)
        if self._mqtt_url.tls:
            client.tls_set()
        client.max_inflight_messages_set(max(self.settings.batch_size, 20))
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        client.subscribe(subscription(self.settings.topic_prefix, self.settings.shared_group), qos=1)
        self._connected.set()
        log.info("connected to %s as %s", self._mqtt_url, self.settings.client_id)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Blocks when the queue is full: back-pressure onto the broker instead of unbounded memory.
        item = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time())
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _connect(self) -> None:
        if self.settings.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.settings.session_expiry_s
            self.client.connect_async(
                self._mqtt_url.host,
                self._mqtt_url.port,
                keepalive=self.settings.keepalive_s,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self._mqtt_url.host, self._mqtt_url.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()

    # -- database ---------------------------------------------------------------------------------------------

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._database_url, application_name=f"livinglab-ingest-{self.settings.client_id}")
        return self._conn

    def _refresh_registry(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._registry_loaded_at < 0.5:
            return
        conn = self._db()
        self._registry = load_registry(conn)
        conn.rollback()
        self._registry_loaded_at = now

    # -- batches ----------------------------------------------------------------------------------------------

    def _collect(self) -> list[Message]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        messages = [first]
        deadline = time.monotonic() + self.settings.batch_interval_ms / 1000
        while len(messages) < self.settings.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                messages.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return messages

    def _lookup(self, sensor_id: str) -> RegistryEntry | None:
        entry = self._registry.get(sensor_id)
        if entry is None:
            self._refresh_registry()
            entry = self._registry.get(sensor_id)
        return entry

    def _build(self, messages: list[Message]) -> Batch:
        batch = Batch(messages=len(messages))
        for m in messages:
            outcome: Readings | Rejection
            topic = parse_topic(m.topic, self.settings.topic_prefix)
            entry = None
            if topic is None:
                outcome = Rejection(RejectionReason.TOPIC_INVALID, "topic does not follow {prefix}/{city}/{kind}/{id}")
            else:
                entry = self._lookup(topic.sensor_id)
                if entry is None:
                    outcome = Rejection(
                        RejectionReason.UNKNOWN_SENSOR, f"no sensor {topic.sensor_id!r} in the registry"
                    )
                elif entry.kind is not topic.kind:
                    outcome = Rejection(
                        RejectionReason.KIND_MISMATCH,
                        f"sensor is registered as {entry.kind.value}, topic says {topic.kind.value}",
                    )
                else:
                    outcome = decode_payload(
                        m.payload, kind=topic.kind, received_at_s=m.received_at_s, limits=self.limits
                    )
            if isinstance(outcome, Rejection):
                batch.rejected.append(
                    RejectedMessage(
                        m.received_at_s,
                        m.topic.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00"),
                        outcome.reason.value,
                        outcome.detail,
                        m.payload[: self.settings.rejected_payload_cap_bytes],
                        len(m.payload),
                        city=topic.city if topic else None,
                        kind=topic.kind.value if topic else None,
                        sensor_id=topic.sensor_id if topic else None,
                        sensor_key=entry.sensor_key if entry else None,
                    )
                )
                continue
            assert entry is not None
            n = len(outcome)
            batch.sensor_key.append(np.full(n, entry.sensor_key, dtype=np.int32))
            batch.quantity.append(outcome.quantity)
            batch.ts_us.append(outcome.ts_us)
            batch.value.append(outcome.value)
            batch.received_at_us.append(np.full(n, int(m.received_at_s * 1e6), dtype=np.int64))
        return batch

    def _write(self, batch: Batch) -> bool:
        """Write until committed (True) or stopped (False). A database outage means waiting, never dropping."""
        delay = 0.5
        while True:
            try:
                result = write_batch(self._db(), batch)
                log.debug("batch committed: %s", result)
                return True
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                with contextlib.suppress(Exception):
                    if self._conn is not None:
                        self._conn.close()
                self._conn = None
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2, 10.0)

    def _notify_rejections(self, batch: Batch) -> None:
        now = time.monotonic()
        for r in batch.rejected:
            if r.sensor_id is None or r.kind is None or r.city is None:
                continue
            key = f"{r.city}/{r.kind}/{r.sensor_id}"
            if now - self._last_notice.get(key, -1e9) < _ERROR_NOTICE_INTERVAL_S:
                continue
            self._last_notice[key] = now
            notice = {
                "reason": r.reason,
                "detail": r.detail,
                "received_at": datetime.fromtimestamp(r.received_at_s, tz=UTC).isoformat().replace("+00:00", "Z"),
            }
            self.client.publish(f"{self.settings.topic_prefix}/{key}/errors", json.dumps(notice), qos=0)

    def run(self) -> None:
        conn = self._db()
        check_schema(conn)
        conn.rollback()
        self._refresh_registry(force=True)
        self._connect()
        try:
            while not self._stop.is_set():
                messages = self._collect()
                if not messages:
                    continue
                batch = self._build(messages)
                if not self._write(batch):
                    break  # stopped during an outage: the broker redelivers what we did not acknowledge
                for m in messages:
                    if m.qos > 0:
                        self.client.ack(m.mid, m.qos)
                self._notify_rejections(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self._conn is not None:
                self._conn.close()

    def stop(self) -> None:
        self._stop.set()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self._connected.wait(timeout_s)
