"""Replaying rejected messages on request: the ingester's side of `POST /v1/rejected/{id}/replay`.

The API marks a stored rejection (`replay_requested_at`) and NOTIFYs `livinglab_replay` (migration 0030). An
ingester's replay thread LISTENs on that channel, and also looks for pending requests every
`LIVINGLAB_REPLAY_POLL_S` (requests made while no ingester ran, or a notification lost with a connection).

Each round is one transaction on the replay thread's own connection:

1. claim up to `batch_size` pending requests (`FOR UPDATE SKIP LOCKED`: several ingesters never replay one message
   twice, and none waits for another);
2. run the stored payloads through the same `BatchBuilder` as live messages, with the registry and limits in force
   now and the message's original receipt time (a reading accepted days ago would be as old then as now);
3. store the accepted readings through the live write path (`BatchWriter.store`, always through the staging table,
   since a replay often meets readings that are stored already), with their dirty windows, so the processor
   recomputes what they change;
4. set `replayed_at` and `replay_outcome` (`accepted`, or the reason code of the new rejection) on each message.

A replay that is rejected again is not stored as a new rejection: the outcome goes on the stored message, which can
be replayed again later. A replay adds its readings to the ingest counters (accepted, duplicates, late, latency) of
the sensor and hour the message was received in, but not the message itself, which was counted when it arrived.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from ingest.batch import BatchBuilder, Message
from ingest.metrics import IngestMetrics
from ingest.rows import Limits
from ingest.uplink_topics import UplinkTopics
from ingest.writer import BatchWriter
from livinglab.resilience import DatabasePolicy
from livinglab.storage import CHANNEL_REPLAY, listen_until_stopped
from livinglab.storage.registry import REGISTRY_COLUMNS, RegistryEntry, registry_entry

log = logging.getLogger(__name__)

_CLAIM = """
SELECT id, received_at, topic, payload, payload_size
FROM rejected
WHERE replay_requested_at IS NOT NULL AND (replayed_at IS NULL OR replayed_at < replay_requested_at)
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_LOOKUP = f"SELECT {REGISTRY_COLUMNS} FROM sensors WHERE sensor_id = ANY(%s)"
_LOOKUP_DEV_EUI = f"SELECT {REGISTRY_COLUMNS} FROM sensors WHERE dev_eui = ANY(%s)"
_RECORD = """
UPDATE rejected SET replayed_at = clock_timestamp(), replay_outcome = o.outcome
FROM unnest(%s::int8[], %s::text[]) AS o (id, outcome)
WHERE rejected.id = o.id
"""
#: The outcome of a message whose payload was cut to the storage cap when it was rejected (the API refuses to
#: request such a replay; this covers a request made directly in the database).
PAYLOAD_TRUNCATED = "payload_truncated"
#: Unique violations in a row (another ingester storing the same keys meanwhile) before a round is left for later.
_MAX_RACES = 5


class _Registry:
    """The sensors a round's messages name, read in the round's transaction (a sensor registered a moment ago,
    typically the reason for the replay, is seen even before the ingester's directory hears of it)."""

    def __init__(self, conn: psycopg.Connection[Any], sensor_ids: list[str]) -> None:
        self._conn = conn
        rows = conn.execute(_LOOKUP, (sensor_ids,)).fetchall() if sensor_ids else []
        self._entries = {entry.sensor_id: entry for entry in map(registry_entry, rows)}
        self._by_dev_eui: dict[str, RegistryEntry] = {}

    def get(self, sensor_id: str) -> RegistryEntry | None:
        return self._entries.get(sensor_id)

    def get_by_dev_eui(self, dev_eui: str) -> RegistryEntry | None:
        return self._by_dev_eui.get(dev_eui)

    def resolve_missing(self, sensor_ids: Any) -> None:
        """Nothing to do: every id the round names was looked up already."""

    def resolve_missing_dev_euis(self, dev_euis: Collection[str]) -> None:
        """LoRaWAN uplinks name their sensor inside the payload: look those up now, in the round's transaction."""
        wanted = [d for d in dev_euis if d not in self._by_dev_eui]
        if wanted:
            for entry in map(registry_entry, self._conn.execute(_LOOKUP_DEV_EUI, (wanted,)).fetchall()):
                assert entry.dev_eui is not None
                self._by_dev_eui[entry.dev_eui] = entry


class ReplayWorker:
    """Carries out requested replays until `stop` is set (`run`), or once (`replay_pending`)."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        prefix: str,
        limits: Limits,
        uplink_topics: UplinkTopics | None = None,
        metrics: IngestMetrics | None = None,
        poll_s: float = 30.0,
        batch_size: int = 500,
    ) -> None:
        self.writer = writer
        self.prefix = prefix
        self.limits = limits
        self.uplink_topics = uplink_topics
        self.metrics = metrics
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.replayed = 0
        self.last_error: str | None = None

    # -- the thread ---------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """LISTEN for requests and carry them out; reconnects with backoff when the database goes away."""

        def serve(conn: psycopg.Connection[Any]) -> None:
            self.last_error = None
            self._serve(conn, stop)

        def failed(error: str) -> None:
            self.writer.close()
            self.last_error = error

        listen_until_stopped(
            self.writer.conninfo,
            policy=self.writer.policy or DatabasePolicy(),
            channel=CHANNEL_REPLAY,
            application_name=self.writer.application_name,
            stop=stop,
            serve=serve,
            failed=failed,
            what="replay",
        )
        self.writer.close()

    def _serve(self, listener: psycopg.Connection[Any], stop: threading.Event) -> None:
        due = True  # requests made before this ingester (re)connected
        waited = 0.0
        while not stop.is_set():
            if due:
                # More notifications may be queued; one pass covers them all.
                for _ in listener.notifies(timeout=0.0):
                    pass
                self.replay_pending(stop)
                due, waited = False, 0.0
            for _ in listener.notifies(timeout=0.5):
                due = True
                break
            waited += 0.5
            if waited >= self.poll_s:
                due = True
            if not due:
                # A silent link never fails a wait for notifications; a query notices it (the policy's deadline).
                listener.execute("SELECT 1")

    # -- rounds -------------------------------------------------------------------------------------------------

    def replay_pending(self, stop: threading.Event | None = None) -> int:
        """Carry out every pending request, a round at a time; returns how many messages were replayed."""
        total = 0
        while stop is None or not stop.is_set():
            done = self._round_with_retries()
            total += done
            if done < self.batch_size:
                break
        return total

    def _round_with_retries(self) -> int:
        races = 0
        while True:
            try:
                return self._round()
            except (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                races += 1
                if races > _MAX_RACES:
                    raise
            except psycopg.OperationalError:
                self.writer.close()
                raise

    def _round(self) -> int:
        conn = self.writer.connection()
        with conn.transaction():
            claimed = conn.execute(_CLAIM, (self.batch_size,)).fetchall()
            if not claimed:
                return 0
            outcomes: dict[int, str] = {}
            messages: list[Message] = []
            ids: list[int] = []
            for rejected_id, received_at, topic, payload, payload_size in claimed:
                payload = bytes(payload)
                if len(payload) < payload_size:
                    outcomes[rejected_id] = PAYLOAD_TRUNCATED
                    continue
                ids.append(rejected_id)
                messages.append(Message(topic, payload, 0, 1, received_at.timestamp()))
            if messages:
                sensors = _Registry(conn, _sensor_ids(messages))
                builder = BatchBuilder(
                    prefix=self.prefix, sensors=sensors, limits=self.limits, uplink_topics=self.uplink_topics
                )
                batch = builder.build(messages)
                result, tallies = self.writer.store(conn, batch, through_staging=True, store_rejections=False)
                tallies.of_replay().write(conn)
                for i, rejected_id in enumerate(ids):
                    rejection = result.rejections.get(i)
                    outcomes[rejected_id] = "accepted" if rejection is None else rejection.reason.value
            conn.execute(_RECORD, (list(outcomes), list(outcomes.values())))
        self.replayed += len(outcomes)
        if self.metrics is not None:
            for outcome in outcomes.values():
                self.metrics.replays.labels(outcome).inc()
        accepted = sum(1 for o in outcomes.values() if o == "accepted")
        log.info("replayed %d rejected messages: %d accepted", len(outcomes), accepted)
        return len(claimed)


def _sensor_ids(messages: list[Message]) -> list[str]:
    """The last topic level of each message: the sensor id, when the topic parses at all."""
    return sorted({m.topic.rsplit("/", 1)[-1] for m in messages})
