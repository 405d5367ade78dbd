"""Prometheus metrics and the health endpoint of an ingester, served on `LIVINGLAB_HEALTH_PORT`.

`GET /metrics`: Prometheus text format. `GET /health`: `{"status": "ok" | "degraded", "checks": {"broker": ...,
"database": ...}}`, HTTP 200 when ok and 503 when degraded (so an orchestrator's probe can act on it).
Each ingester has its own registry, so several can run in one process (tests) without clashing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from livinglab.domain import RejectionReason

log = logging.getLogger(__name__)

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HealthReport = tuple[bool, dict[str, Any]]
ThreadSource = threading.Thread | Callable[[], threading.Thread | None]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: The stages of an ingester, each a thread of its own (docs/operations.md, Monitoring).
STAGES = ("network", "build", "write", "registry", "replay")


def stat_cpu_seconds(path: str) -> float | None:
    """User and system CPU time from a /proc `stat` file: `/proc/{pid}/stat` for a process (all its threads),
    `/proc/self/task/{tid}/stat` for a thread of this one. None where there is no such file (no /proc, or the
    process or thread is gone)."""
    try:
        with open(path, "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime and stime: fields 14 and 15 of proc(5)


def thread_cpu_seconds(native_id: int) -> float | None:
    """User and system CPU time of one thread of this process (None where there is no /proc, or when the thread is
    gone)."""
    return stat_cpu_seconds(f"/proc/self/task/{native_id}/stat")


class StageCpu:
    """`livinglab_ingest_thread_cpu_seconds_total{stage}`: the CPU time of each stage's thread, read on each scrape.

    A stage is tracked by the thread that runs it, from its first turn on (`track`), so several ingesters in one
    process (tests) each count their own. A thread that has ended drops out of the family.
    """

    _NAME = "livinglab_ingest_thread_cpu_seconds"
    _HELP = (
        "CPU time (user and system) of the ingester's thread of each stage: network, build, write, registry, replay."
    )

    def __init__(self) -> None:
        self._threads: dict[str, ThreadSource] = {}

    def track(self, stage: str, thread: ThreadSource | None = None) -> None:
        """Count `thread`'s CPU time as `stage`'s: a thread, a callable naming it once it runs (None until then), or
        by default the calling thread."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self._threads[stage] = thread if thread is not None else threading.current_thread()

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._NAME, self._HELP, labels=["stage"])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._NAME, self._HELP, labels=["stage"])
        for stage, source in list(self._threads.items()):
            thread = source if isinstance(source, threading.Thread) else source()
            native_id = thread.native_id if thread is not None and thread.is_alive() else None
            seconds = thread_cpu_seconds(native_id) if native_id is not None else None
            if seconds is not None:
                family.add_metric([stage], seconds)
        yield family


class IngestMetrics:
    """The ingester's metrics, all prefixed `livinglab_ingest_`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("livinglab_ingest_messages", "Messages taken from the broker into batches.", registry=r)
        self.accepted = Counter("livinglab_ingest_readings_accepted", "Readings stored.", registry=r)
        self.rejected = Counter(
            "livinglab_ingest_messages_rejected", "Messages rejected, by reason code.", ["reason"], registry=r
        )
        for reason in RejectionReason:
            self.rejected.labels(reason.value)
        self.payloads_dropped = Counter(
            "livinglab_ingest_rejected_payloads_dropped",
            "Rejected messages stored without their payload: the quota of rejected payload bytes was used up.",
            registry=r,
        )
        self.payload_bytes_dropped = Counter(
            "livinglab_ingest_rejected_payload_bytes_dropped",
            "Payload bytes of rejected messages left out for the quota (up to the payload cap each).",
            registry=r,
        )
        self.duplicates = Counter(
            "livinglab_ingest_readings_duplicate", "Readings already stored with the same value.", registry=r
        )
        self.late = Counter(
            "livinglab_ingest_readings_late", "Readings stored after their 1-minute window was final.", registry=r
        )
        self.batch_messages = Histogram(
            "livinglab_ingest_batch_messages", "Messages per batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_readings = Histogram(
            "livinglab_ingest_batch_readings", "Readings per batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.commit_seconds = Histogram(
            "livinglab_ingest_commit_seconds",
            "Time to write and commit one batch.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.ack_lag_seconds = Histogram(
            "livinglab_ingest_ack_lag_seconds",
            "From receiving a message to acknowledging it (after its batch committed).",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.database_retries = Counter(
            "livinglab_ingest_database_retries", "Batch writes retried after a database error.", registry=r
        )
        self.dropped = Counter(
            "livinglab_ingest_messages_dropped",
            "Messages dropped before decoding: QoS 0 over the buffer budget, or QoS 1 over the inbox limit (those"
            " are redelivered by the broker).",
            ["why"],
            registry=r,
        )
        self.notices = Counter(
            "livinglab_ingest_notices",
            "Rejection notices published or suppressed by rate limit.",
            ["outcome"],
            registry=r,
        )
        self.replays = Counter(
            "livinglab_ingest_replays",
            "Rejected messages replayed on request, by outcome (`accepted` or the reason code of the new rejection).",
            ["outcome"],
            registry=r,
        )
        self.uplinks = Counter(
            "livinglab_ingest_lorawan_uplinks",
            "LoRaWAN uplinks taken into batches (stored or rejected), by network server.",
            ["source"],
            registry=r,
        )
        self.other_events = Counter(
            "livinglab_ingest_lorawan_other_events",
            "Other events of LoRaWAN network servers on a subscribed topic (join, status, ...), ignored.",
            ["source"],
            registry=r,
        )
        self.members_ignored = Counter(
            "livinglab_ingest_lorawan_members_ignored",
            "Codec output members of stored uplinks that map to no quantity (battery and the like).",
            registry=r,
        )
        self.frames_missed = Counter(
            "livinglab_ingest_lorawan_frames_missed",
            "Uplinks of a LoRaWAN device that never arrived, by the gaps in its frame counter (fCnt).",
            ["sensor_id"],
            registry=r,
        )
        self.inbox = Gauge("livinglab_ingest_inbox_messages", "Messages received and not yet batched.", registry=r)
        self.broker_up = Gauge("livinglab_ingest_broker_connected", "1 when connected to the broker.", registry=r)
        self.database_up = Gauge(
            "livinglab_ingest_database_up", "1 when the last database operation worked.", registry=r
        )
        self.stage_cpu = StageCpu()
        r.register(self.stage_cpu)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """`/metrics` and `/health` over HTTP in a daemon thread."""

    def __init__(self, host: str, port: int, metrics: IngestMetrics, health: Callable[[], HealthReport]) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ingest-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health on http://%s:%d/", self._server.server_address[0], self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: IngestMetrics, health: Callable[[], HealthReport]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path in ("/health", "/v1/health"):
                ok, checks = health()
                body = json.dumps({"status": "ok" if ok else "degraded", "checks": checks}).encode()
                self._answer(200 if ok else 503, "application/json", body)
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health: " + format, *args)

    return Handler
