"""The ingester: MQTT in, one transaction per batch, acknowledgements only after COMMIT.

Threads: paho's network thread receives messages into the inbox (never blocking, see `ingest.inbox`); the batch
pipeline (`ingest.pipeline`) builds batches in the thread that calls `run` and writes them in another, and only after
the COMMIT acknowledges them and publishes rejection notices; the registry thread LISTENs for sensor changes; the
replay thread carries out requested replays of rejected messages (`ingest.replay`); an optional HTTP thread serves
/metrics and /health.

Outages: when the database is down, the batch in hand is retried with backoff and nothing is acknowledged, so the
broker keeps the backlog (and stops sending once the in-flight window is full); when the broker is down, paho
reconnects with backoff and the persistent session resumes where it was.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from ingest._paho import check_paho
from ingest.batch import BatchBuilder
from ingest.broker import BrokerLink, Protocol, probe_protocol
from ingest.inbox import Inbox
from ingest.metrics import HealthReport, HealthServer, IngestMetrics
from ingest.notices import RejectionNotices
from ingest.pipeline import BatchPipeline, describe
from ingest.quota import RejectedQuota
from ingest.registry import SensorDirectory
from ingest.replay import ReplayWorker
from ingest.settings import IngestSettings
from ingest.uplink_topics import UplinkTopics
from ingest.writer import BatchWriter
from livinglab.resilience import Backoff
from livinglab.storage import check_schema

log = logging.getLogger(__name__)


class Ingester:
    """One ingester process's worth of work. `run()` blocks until `stop()`."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._database_url = settings.require_database_url()
        self._mqtt_url = settings.require_mqtt_url()
        check_paho(settings.paho_hook_names)  # the hooks rely on paho's private parts: fail at start, not later
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.metrics = IngestMetrics()
        policy = settings.database_policy()
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
            policy=policy,
            quota=RejectedQuota(
                prefix=settings.topic_prefix,
                quota_bytes=settings.rejected_quota_bytes,
                period_s=settings.rejected_quota_period_s,
            ),
        )
        self.sensors = SensorDirectory(
            self._database_url,
            refresh_s=settings.registry_refresh_s,
            application_name=f"livinglab-ingest-registry:{settings.client_id}"[:63],
            policy=policy,
        )
        uplink_topics = UplinkTopics(settings.uplink_filters())
        self.builder = BatchBuilder(
            prefix=settings.topic_prefix, sensors=self.sensors, limits=settings.limits(), uplink_topics=uplink_topics
        )
        self.replay = ReplayWorker(
            BatchWriter(
                self._database_url,
                application_name=f"livinglab-ingest-replay:{settings.client_id}"[:63],
                allowed_lateness_s=settings.allowed_lateness_s,
                policy=policy,
            ),
            prefix=settings.topic_prefix,
            limits=settings.limits(),
            uplink_topics=uplink_topics,
            metrics=self.metrics,
            poll_s=settings.replay_poll_s,
        )
        self.link: BrokerLink | None = None
        self.notices: RejectionNotices | None = None
        self.health_server: HealthServer | None = None
        self.pipeline: BatchPipeline | None = None
        self.protocol: Protocol | None = None
        self._startup_error: str | None = "not connected yet"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        registry_thread = threading.Thread(
            target=self.sensors.run, args=(self._stop,), name="ingest-registry", daemon=True
        )
        replay_thread = threading.Thread(target=self.replay.run, args=(self._stop,), name="ingest-replay", daemon=True)
        self.metrics.stage_cpu.track("registry", registry_thread)
        self.metrics.stage_cpu.track("replay", replay_thread)
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
            link = self.link
            self.metrics.stage_cpu.track("network", lambda: link.network_thread)
            self.notices = RejectionNotices(
                self.settings.topic_prefix, self.link.publish, interval_s=self.settings.error_notice_interval_s
            )
            self.pipeline = BatchPipeline(
                self.settings,
                inbox=self.inbox,
                builder=self.builder,
                writer=self.writer,
                link=self.link,
                notices=self.notices,
                metrics=self.metrics,
                stop=self._stop,
            )
            self.link.start()
            replay_thread.start()
            self._ready.set()
            self.pipeline.run()
        finally:
            if self.link is not None:
                self.link.stop()
            self._stop.set()
            for thread in (registry_thread, replay_thread):
                if thread.is_alive():
                    thread.join(timeout=10)
            self.sensors.close()
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
        backoff = Backoff(0.5, self.settings.database_retry_max_s)
        while not self._stop.is_set():
            try:
                conn = self.writer.connection()
                check_schema(conn)
                self._startup_error = None
                return True
            except psycopg.OperationalError as exc:
                self.writer.close()
                self._startup_error = describe(exc)
                delay = backoff.failed()
                log.warning("database not reachable (%s); retrying in %.1f s", self._startup_error, delay)
            if self._stop.wait(delay):
                break
        return False

    def _choose_protocol(self) -> Protocol | None:
        if self.settings.mqtt_protocol != "auto":
            return self.settings.mqtt_protocol
        backoff = Backoff(0.5, self.settings.reconnect_max_s)
        while not self._stop.is_set():
            try:
                protocol = probe_protocol(self._mqtt_url)
                log.info("broker at %s speaks MQTT %s", self._mqtt_url, protocol)
                return protocol
            except OSError as exc:
                delay = backoff.failed()
                log.warning("broker %s not reachable (%s); retrying in %.1f s", self._mqtt_url, exc, delay)
            if self._stop.wait(delay):
                break
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
            extra_filters=[topic_filter for _, topic_filter in s.uplink_filters()],
            paho_hooks=s.paho_hook_names,
            batch_size=s.batch_size,
        )

    # -- health -------------------------------------------------------------------------------------------------

    @property
    def batches(self) -> int:
        """Batches committed and acknowledged so far."""
        return self.pipeline.batches if self.pipeline else 0

    @property
    def database_error(self) -> str | None:
        """Why the last database operation failed, or None when it worked."""
        return self.pipeline.database_error if self.pipeline else self._startup_error

    def health(self) -> HealthReport:
        """(ok, checks) for /health: the broker link is subscribed and the last database operation worked."""
        link = self.link
        broker_ok = link is not None and link.connected.is_set() and link.subscribed.is_set()
        refused = link.refused_filters if link is not None else []
        database_ok = self.database_error is None and (self.sensors.listening or self.sensors.last_error is None)
        checks: dict[str, Any] = {
            "broker": {
                "status": "ok" if broker_ok and not refused else "down",
                "detail": None if broker_ok else (link.last_error if link else "not started"),
                "protocol": self.protocol,
                "refused_filters": refused,
            },
            "database": {
                "status": "ok" if database_ok else "down",
                "detail": None if database_ok else (self.database_error or self.sensors.last_error),
            },
            "inbox_messages": len(self.inbox),
            "batches": self.batches,
        }
        if broker_ok and refused:
            checks["broker"]["detail"] = f"subscription refused: {', '.join(refused)}"
        return broker_ok and not refused and database_ok, checks
