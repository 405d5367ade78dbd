"""The batch pipeline: take from the inbox, build, write, acknowledge, in two threads.

The building thread takes a batch from the inbox and decodes and checks it (CPU work); the writing thread stores the
batch before it (mostly waiting on PostgreSQL, with the GIL released), then acknowledges it and publishes its
rejection notices. A hand-off of one batch between them keeps the order and lets decoding overlap the database.

Nothing is ever dropped here: a failed build or write is retried with backoff until it succeeds or the ingester
stops; what was not acknowledged by then, the broker delivers again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import psycopg

from ingest.batch import Batch, BatchBuilder, Message
from ingest.broker import BrokerLink
from ingest.inbox import Inbox
from ingest.metrics import IngestMetrics
from ingest.notices import RejectionNotices
from ingest.registry import SensorDirectory
from ingest.settings import IngestSettings
from ingest.writer import BatchWriter, WriteResult
from livinglab.resilience import Backoff, is_transient
from livinglab.storage import describe_error

log = logging.getLogger(__name__)

T = TypeVar("T")


#: An exception in one short line, for logs and /health.
describe = describe_error


class BatchPipeline:
    """Runs until `stop` is set; `run()` is the building thread and starts the writing thread itself."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        inbox: Inbox,
        builder: BatchBuilder,
        writer: BatchWriter,
        link: BrokerLink,
        notices: RejectionNotices,
        metrics: IngestMetrics,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.builder = builder
        self.writer = writer
        self.link = link
        self.notices = notices
        self.metrics = metrics
        self.stop = stop
        self.database_error: str | None = None
        self.batches = 0
        self._handoff: queue.Queue[tuple[Sequence[Message], Batch]] = queue.Queue(maxsize=1)
        self._overflow_seen = 0
        self._tallies_written_at = time.monotonic()

    def run(self) -> None:
        writing = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        writing.start()
        try:
            self._build_loop()
        finally:
            self.stop.set()
            writing.join(timeout=60)

    # -- building thread ----------------------------------------------------------------------------------------

    def _build_loop(self) -> None:
        self.metrics.stage_cpu.track("build")
        s = self.settings
        linger_s = s.batch_interval_ms / 1000
        while not self.stop.is_set():
            messages = self.inbox.take(
                max_messages=s.batch_size, max_bytes=s.batch_max_bytes, wait_s=0.25, linger_s=linger_s
            )
            if messages:
                # Building looks new sensor ids up in the database (the directory's own connection).
                batch = self._retrying("build", partial(self.builder.build, messages), self._lookup)
                if batch is None:
                    return
                while not self.stop.is_set():
                    try:
                        self._handoff.put((messages, batch), timeout=0.25)
                        break
                    except queue.Full:
                        self._housekeeping()
            self._housekeeping()

    def _housekeeping(self) -> None:
        self.link.check_alive()
        m = self.metrics
        m.inbox.set(len(self.inbox))
        m.broker_up.set(1 if self.link.subscribed.is_set() else 0)
        overflow = self.inbox.dropped_unacknowledged
        if overflow != self._overflow_seen and len(self.inbox) <= self.settings.batch_size:
            # QoS 1 messages were dropped unacknowledged. The broker still holds them and sends them again after a
            # reconnect; reconnecting only once most of the inbox is stored guarantees progress on every round.
            m.dropped.labels("inbox_full").inc(overflow - self._overflow_seen)
            self._overflow_seen = overflow
            log.warning(
                "%d messages beyond the inbox limit were left to the broker (it sent more than the in-flight window);"
                " reconnecting to have them sent again",
                overflow,
            )
            self.link.force_reconnect()
        counted = m.dropped.labels("qos0_budget")
        new = self.inbox.dropped_qos0 - counted._value.get()
        if new > 0:
            counted.inc(new)

    # -- writing thread -----------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        self.metrics.stage_cpu.track("write")
        try:
            self._write_batches()
        finally:
            try:
                self.writer.flush_tallies()
            except psycopg.Error as exc:
                log.warning("counters of the last batches not written (%s)", describe(exc))

    def _write_batches(self) -> None:
        while not self.stop.is_set():
            try:
                messages, batch = self._handoff.get(timeout=0.25)
            except queue.Empty:
                continue
            started = time.perf_counter()
            # Counters wait for a later batch while more work is queued (see `ingest.tallies`).
            now = time.monotonic()
            write_tallies = self._handoff.empty() or now - self._tallies_written_at >= self.settings.counters_flush_s
            result = self._retrying(
                "write", partial(self.writer.write, batch, write_tallies=write_tallies), self.writer
            )
            if result is None:
                return  # stopped during an outage: the broker redelivers what was not acknowledged
            if write_tallies:
                self._tallies_written_at = now
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.link.acknowledge(messages)
            self._account(messages, batch, result)

    def _account(self, messages: Sequence[Message], batch: Batch, result: WriteResult) -> None:
        m = self.metrics
        m.ack_lag_seconds.observe(max(0.0, time.time() - messages[0].received_at_s))
        m.messages.inc(len(messages))
        m.batch_messages.observe(len(messages))
        m.batch_readings.observe(len(batch.rows))
        m.accepted.inc(result.inserted)  # after the acknowledgements: a reader of this counter may rely on that
        m.duplicates.inc(result.duplicates)
        m.late.inc(result.late)
        for rejection in result.rejections.values():
            m.rejected.labels(rejection.reason.value).inc()
        if batch.fcnt is not None:
            self._account_uplinks(batch, result)
        m.payloads_dropped.inc(result.payloads_dropped)
        m.payload_bytes_dropped.inc(result.payload_bytes_dropped)
        if result.rejections:
            sent_before = self.notices.sent
            self.notices.send(
                (batch.topics[i], rejection, batch.received_at_s[i]) for i, rejection in result.rejections.items()
            )
            sent = self.notices.sent - sent_before
            m.notices.labels("published").inc(sent)
            m.notices.labels("suppressed").inc(len(result.rejections) - sent)
        self.batches += 1

    def _account_uplinks(self, batch: Batch, result: WriteResult) -> None:
        m = self.metrics
        for source, n in batch.uplinks.items():
            m.uplinks.labels(source).inc(n)
        for source, n in batch.other_events.items():
            m.other_events.labels(source).inc(n)
        if batch.ignored is not None:
            m.members_ignored.inc(sum(int(batch.ignored[i]) for i in np.flatnonzero(batch.ignored).tolist()
                                      if i not in result.rejections))  # fmt: skip
        for i, n in result.frames_missed.items():
            topic = batch.topics[i]
            if topic is not None:
                m.frames_missed.labels(topic.sensor_id).inc(n)

    # -- retries ------------------------------------------------------------------------------------------------

    @property
    def _lookup(self) -> SensorDirectory | None:
        sensors = self.builder.sensors
        return sensors if isinstance(sensors, SensorDirectory) else None

    def _retrying(self, what: str, attempt: Callable[[], T], owner: BatchWriter | SensorDirectory | None) -> T | None:
        """`attempt()` until it returns, backing off on database errors; None when stopped first.

        The owner's connection carries the database policy's deadline (`livinglab.resilience`), so a silent database
        fails into this retry loop (`DatabaseTimeout`) instead of hanging it.
        """
        backoff = Backoff(0.2, self.settings.database_retry_max_s)
        while not self.stop.is_set():
            try:
                result = attempt()
            except psycopg.Error as exc:
                if owner is not None:
                    owner.close()  # after an error mid-batch the connection is in doubt; a new one is cheap
                self.database_error = describe(exc)
                self.metrics.database_up.set(0)
                self.metrics.database_retries.inc()
                delay = backoff.failed()
                level = logging.WARNING if is_transient(exc) else logging.ERROR  # an error here is a bug, or bad data
                log.log(level, "batch %s failed (%s); retrying in %.1f s", what, self.database_error, delay)
                if self.stop.wait(delay):
                    return None
                continue
            self.database_error = None
            self.metrics.database_up.set(1)
            return result
        return None
