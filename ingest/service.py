"""The ingester: MQTT in, one transaction per batch, acknowledgements only after COMMIT.

Threads: paho's network thread receives messages into the inbox (never blocking, see `ingest.inbox`); the batch
thread (the one that calls `run`) takes batches from it, decodes and checks them, writes them, and only after the
COMMIT acknowledges them and publishes rejection notices; the registry thread LISTENs for sensor changes; an
optional HTTP thread serves /metrics and /health.

Outages: when the database is down, the batch in hand is retried with backoff and nothing is acknowledged, so the
broker keeps the backlog (and stops sending once the in-flight window is full); when the broker is down, paho
reconnects with backoff and the persistent session resumes where it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from ingest.batch import Batch, BatchBuilder, Message
from ingest.broker import BrokerLink, Protocol, probe_protocol
from ingest.inbox import Inbox
from ingest.metrics import HealthReport, HealthServer, IngestMetrics
from ingest.notices import RejectionNotices
from ingest.registry import SensorDirectory
from ingest.settings import IngestSettings
from ingest.watchdog import cut_after
from ingest.writer import BatchWriter, WriteResult
from livinglab.storage import check_schema

log = logging.getLogger(__name__)

#: How long after the server's own statement_timeout a silent database connection is taken for dead.
_CUT_GRACE_S = 5.0


class Ingester:
    """One ingester process's worth of work. `run()` blocks until `stop()`."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._mqtt_url = settings.require_mqtt_url()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.metrics = IngestMetrics()
        self.inbox = Inbox(
            max_messages=settings.inbox_limit,
            max_bytes=settings.inbox_max_bytes,
            max_qos0_bytes=settings.qos0_buffer_bytes,
        )
        self.writer = BatchWriter(
            self._database_url,
            application_name=f"livinglab-ingest:{settings.client_id}"[:63],
            allowed_lateness_s=settings.allowed_lateness_s,
            payload_cap_bytes=settings.rejected_payload_cap_bytes,
            statement_timeout_ms=int(settings.database_timeout_s * 1000),
        )
        self.sensors = SensorDirectory(
            self._database_url,
            refresh_s=settings.registry_refresh_s,
            application_name=f"livinglab-ingest-registry:{settings.client_id}"[:63],
            lookup_connection=self.writer.connection,
            deadline_s=settings.database_timeout_s + _CUT_GRACE_S,
        )
        self.builder = BatchBuilder(prefix=settings.topic_prefix, sensors=self.sensors, limits=settings.limits())
        self.link: BrokerLink | None = None
        self.notices: RejectionNotices | None = None
        self.health_server: HealthServer | None = None
        self.protocol: Protocol | None = None
        self.database_error: str | None = "not connected yet"
        self.batches = 0
        self._overflow_seen = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        registry_thread = threading.Thread(
            target=self.sensors.run, args=(self._stop,), name="ingest-registry", daemon=True
        )
        try:
            if self.settings.health_port is not None:
                self.health_server = HealthServer(
                    self.settings.health_host, self.settings.health_port, self.metrics, self.health
                )
                self.health_server.start()
            if not self._wait_for_database():
                return
            registry_thread.start()
            while not self.sensors.wait_loaded(0.5):
                if self._stop.is_set():
                    return
            self.protocol = self._choose_protocol()
            if self.protocol is None:
                return
            self.link = self._make_link(self.protocol)
            self.notices = RejectionNotices(
                self.settings.topic_prefix, self.link.publish, interval_s=self.settings.error_notice_interval_s
            )
            self.link.start()
            self._ready.set()
            self._loop()
        finally:
            if self.link is not None:
                self.link.stop()
            self._stop.set()
            if registry_thread.is_alive():
                registry_thread.join(timeout=10)
            self.writer.close()
            if self.health_server is not None:
                self.health_server.stop()

    def stop(self) -> None:
        self._stop.set()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """True once connected and subscribed (tests and tools wait for it before publishing)."""
        deadline = time.monotonic() + timeout_s
        if not self._ready.wait(timeout_s):
            return False
        assert self.link is not None
        return self.link.subscribed.wait(max(0.0, deadline - time.monotonic()))

    # -- start-up -----------------------------------------------------------------------------------------------

    def _wait_for_database(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                conn = self.writer.connection()
                check_schema(conn)
                self.database_error = None
                return True
            except psycopg.OperationalError as exc:
                self.writer.close()
                self.database_error = _describe(exc)
                log.warning("database not reachable (%s); retrying in %.1f s", self.database_error, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.settings.database_retry_max_s)
        return False

    def _choose_protocol(self) -> Protocol | None:
        if self.settings.mqtt_protocol != "auto":
            return self.settings.mqtt_protocol
        delay = 0.5
        while not self._stop.is_set():
            try:
                protocol = probe_protocol(self._mqtt_url)
                log.info("broker at %s speaks MQTT %s", self._mqtt_url, protocol)
                return protocol
            except OSError as exc:
                log.warning("broker %s not reachable (%s); retrying in %.1f s", self._mqtt_url, exc, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.settings.reconnect_max_s)
        return None

    def _make_link(self, protocol: Protocol) -> BrokerLink:
        s = self.settings
        return BrokerLink(
            self._mqtt_url,
            protocol=protocol,
            client_id=s.client_id,
            prefix=s.topic_prefix,
            inbox=self.inbox,
            shared_group=s.shared_group,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            keepalive_s=s.keepalive_s,
            reconnect_min_s=s.reconnect_min_s,
            reconnect_max_s=s.reconnect_max_s,
        )

    # -- the batch loop -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        s = self.settings
        linger_s = s.batch_interval_ms / 1000
        while not self._stop.is_set():
            messages = self.inbox.take(
                max_messages=s.batch_size, max_bytes=s.batch_max_bytes, wait_s=0.25, linger_s=linger_s
            )
            if messages:
                self._ingest(messages)
            self._housekeeping()

    def _ingest(self, messages: Sequence[Message]) -> None:
        outcome = self._write(messages)
        if outcome is None:
            return  # stopped during an outage: the broker redelivers what was not acknowledged
        batch, result = outcome
        assert self.link is not None
        assert self.notices is not None
        self.link.acknowledge(messages)
        now = time.time()
        m = self.metrics
        m.ack_lag_seconds.observe(max(0.0, now - messages[0].received_at_s))
        m.messages.inc(len(messages))
        m.batch_messages.observe(len(messages))
        m.batch_readings.observe(len(batch.rows))
        m.accepted.inc(result.inserted)
        m.duplicates.inc(result.duplicates)
        m.late.inc(result.late)
        for rejection in result.rejections.values():
            m.rejected.labels(rejection.reason.value).inc()
        if result.rejections:
            sent_before = self.notices.sent
            self.notices.send(
                (batch.topics[i], rejection, batch.received_at_s[i]) for i, rejection in result.rejections.items()
            )
            sent = self.notices.sent - sent_before
            m.notices.labels("published").inc(sent)
            m.notices.labels("suppressed").inc(len(result.rejections) - sent)
        self.batches += 1

    def _write(self, messages: Sequence[Message]) -> tuple[Batch, WriteResult] | None:
        """Build and write a batch until it is committed; None when stopped first. Never drops the batch."""
        delay = 0.2
        while not self._stop.is_set():
            started = time.perf_counter()
            deadline_s = self.settings.database_timeout_s + _CUT_GRACE_S
            try:
                with cut_after(deadline_s, lambda: self.writer.open_connection, "batch write") as deadline:
                    # Built again after a failure: the registry may have changed meanwhile.
                    batch = self.builder.build(messages)
                    result = self.writer.write(batch)
            except psycopg.Error as exc:
                self.writer.close()  # after a deadline the connection is unusable; a new one is cheap
                self.database_error = _describe(exc)
                if deadline.fired:
                    self.database_error = f"no answer within {deadline_s:.0f} s ({self.database_error})"
                self.metrics.database_up.set(0)
                self.metrics.database_retries.inc()
                if isinstance(exc, psycopg.OperationalError):
                    log.warning("database unavailable (%s); retrying the batch in %.1f s", self.database_error, delay)
                else:
                    log.error("batch write failed (%s); retrying in %.1f s", self.database_error, delay)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self.settings.database_retry_max_s)
                continue
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.database_error = None
            self.metrics.database_up.set(1)
            return batch, result
        return None

    def _housekeeping(self) -> None:
        assert self.link is not None
        self.link.check_alive()
        self.metrics.inbox.set(len(self.inbox))
        self.metrics.broker_up.set(1 if self.link.connected.is_set() else 0)
        overflow = self.inbox.dropped_unacknowledged
        if overflow != self._overflow_seen and len(self.inbox) <= self.settings.batch_size:
            # QoS 1 messages were dropped unacknowledged. The broker still holds them and sends them again after a
            # reconnect; reconnecting only once most of the inbox is stored guarantees progress on every round.
            self.metrics.dropped.labels("inbox_full").inc(overflow - self._overflow_seen)
            self._overflow_seen = overflow
            log.warning(
                "%d messages beyond the inbox limit were left to the broker (it sent more than the in-flight window);"
                " reconnecting to have them sent again",
                overflow,
            )
            self.link.force_reconnect()
        dropped_qos0 = self.inbox.dropped_qos0
        counted = self.metrics.dropped.labels("qos0_budget")
        if dropped_qos0 > counted._value.get():
            counted.inc(dropped_qos0 - counted._value.get())

    # -- health -------------------------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """(ok, checks) for /health: the broker link is connected and the last database operation worked."""
        link = self.link
        broker_ok = link is not None and link.connected.is_set() and link.subscribed.is_set()
        database_ok = self.database_error is None and (self.sensors.listening or self.sensors.last_error is None)
        checks: dict[str, Any] = {
            "broker": {
                "status": "ok" if broker_ok else "down",
                "detail": None if broker_ok else (link.last_error if link else "not started"),
                "protocol": self.protocol,
            },
            "database": {
                "status": "ok" if database_ok else "down",
                "detail": None if database_ok else (self.database_error or self.sensors.last_error),
            },
            "inbox_messages": len(self.inbox),
            "batches": self.batches,
        }
        return broker_ok and database_ok, checks


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
