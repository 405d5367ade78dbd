"""Replaying rejected messages on request (`ingest.replay`), against a real PostgreSQL and, end to end, Mosquitto."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from ingest.replay import PAYLOAD_TRUNCATED, ReplayWorker
from ingest.rows import Limits
from ingest.writer import BatchWriter
from livinglab.embedded import MosquittoBroker
from livinglab.sensors import SensorSpec
from livinglab.storage import CHANNEL_REPLAY
from livinglab.storage.registry import insert_sensor
from tests.support.ingest import PREFIX, Harness, ingesting, message, publish_all, ten_minutes_ago
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import AIR, register

pytestmark = pytest.mark.integration

OUTCOMES = "SELECT sensor_id, reason, replay_outcome, replayed_at IS NOT NULL FROM rejected ORDER BY id"
READINGS = "SELECT s.sensor_id, r.value FROM readings r JOIN sensors s USING (sensor_key) ORDER BY 1, 2"


def _execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _request_all(url: str) -> None:
    """What `POST /v1/rejected/{id}/replay` does, for every stored rejection."""
    with psycopg.connect(url, autocommit=True) as conn:
        for (rejected_id,) in conn.execute("SELECT id FROM rejected ORDER BY id").fetchall():
            conn.execute("UPDATE rejected SET replay_requested_at = clock_timestamp() WHERE id = %s", (rejected_id,))
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REPLAY, str(rejected_id)))


def _worker(url: str, **extra: float) -> ReplayWorker:
    return ReplayWorker(BatchWriter(url), prefix=PREFIX, limits=Limits(), **extra)  # type: ignore[arg-type]


def test_a_replay_decodes_again_with_the_current_registry_and_records_each_outcome(
    harness: Harness, fresh_database_url: str
) -> None:
    url = fresh_database_url
    register(url, "aq-1")
    t0 = ten_minutes_ago()
    received = time.time() - 5
    messages = [
        message("aq-late", json.dumps({"ts": t0, "pm25": 12.5, "pm10": 30}).encode(), received_at_s=received),
        message("aq-1", b'{"ts": %d, "pm25": NaN}' % t0, received_at_s=received),
        message("aq-1", json.dumps({"ts": t0, "pm25": 7}).encode(), received_at_s=received),
        message("aq-1", json.dumps({"ts": t0, "pm25": 8}).encode(), received_at_s=received),  # conflicts with 7
        message("aq-1", json.dumps({"ts": t0 + 60, "pm25": 3}).encode(), received_at_s=received),
    ]
    harness.writer.write(harness.build(messages))
    assert rows(url, "SELECT sensor_id, reason FROM rejected ORDER BY id") == [
        ("aq-late", "unknown_sensor"),
        ("aq-1", "non_finite_value"),
        ("aq-1", "conflicting_duplicate"),
    ]
    # The sensor the first message named is registered afterwards; a fourth rejection lost the end of its payload.
    with psycopg.connect(url) as conn:
        insert_sensor(conn, SensorSpec.model_validate({"sensor_id": "aq-late", **AIR}))
        conn.execute(
            "INSERT INTO rejected (received_at, topic, sensor_id, reason, detail, payload, payload_size)"
            " VALUES (now(), %s, 'aq-1', 'payload_too_large', 'too large', 'xx', 100)",
            (f"{PREFIX}/jakarta/air/aq-1",),
        )
    counters_before = rows(url, "SELECT sum(messages), sum(accepted), sum(rejected) FROM ingest_counters")
    _execute(url, "DELETE FROM dirty_windows")
    _request_all(url)

    worker = _worker(url)
    try:
        assert worker.replay_pending() == 4
        assert worker.replay_pending() == 0  # nothing is replayed twice
    finally:
        worker.writer.close()

    assert rows(url, OUTCOMES) == [
        ("aq-late", "unknown_sensor", "accepted", True),
        ("aq-1", "non_finite_value", "non_finite_value", True),
        ("aq-1", "conflicting_duplicate", "conflicting_duplicate", True),
        ("aq-1", "payload_too_large", PAYLOAD_TRUNCATED, True),
    ]
    assert rows(url, READINGS) == [("aq-1", 3.0), ("aq-1", 7.0), ("aq-late", 12.5), ("aq-late", 30.0)]
    # Stored with the time the message was received, not the time of the replay.
    received_at = scalar(
        url,
        "SELECT DISTINCT extract(epoch FROM received_at) FROM readings r JOIN sensors s USING (sensor_key)"
        " WHERE s.sensor_id = 'aq-late'",
    )
    assert float(received_at) == pytest.approx(received, abs=1e-3)
    # The processor is told: the windows of the accepted readings are dirty (pm25 and pm10 of minute t0).
    assert scalar(url, "SELECT count(*) FROM dirty_windows") == 2
    # Rejected again is not a new rejection, and the messages were counted when they arrived; readings count now.
    assert scalar(url, "SELECT count(*) FROM rejected") == 4
    (messages_before, accepted_before, rejected_before) = counters_before[0]
    assert rows(url, "SELECT sum(messages), sum(accepted), sum(rejected) FROM ingest_counters") == [
        (messages_before, accepted_before + 2, rejected_before)
    ]


def test_two_ingesters_replaying_at_once_carry_out_each_request_once(harness: Harness, fresh_database_url: str) -> None:
    url = fresh_database_url
    t0 = ten_minutes_ago()
    n = 600
    harness.writer.write(
        harness.build([message(f"aq-{i % 30}", json.dumps({"ts": t0 + i, "pm25": i}).encode()) for i in range(n)])
    )
    assert scalar(url, "SELECT count(*) FROM rejected WHERE reason = 'unknown_sensor'") == n
    register(url, *(f"aq-{i}" for i in range(30)))
    _request_all(url)
    workers = [_worker(url, batch_size=25), _worker(url, batch_size=25)]
    done: list[int] = []
    threads = [threading.Thread(target=lambda w=w: done.append(w.replay_pending())) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for w in workers:
            w.writer.close()
    assert sum(done) == n
    assert all(d > 0 for d in done), done  # both took a share (SKIP LOCKED), neither waited for the other
    assert scalar(url, "SELECT count(*) FROM readings") == n
    assert scalar(url, "SELECT count(*) FROM rejected WHERE replay_outcome = 'accepted'") == n
    assert scalar(url, "SELECT sum(accepted) FROM ingest_counters") == n
    assert scalar(url, "SELECT coalesce(sum(duplicates), 0) FROM ingest_counters") == 0


def test_the_ingester_replays_on_notification_and_finds_requests_made_while_it_was_down(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    url = fresh_database_url
    settings = {
        "database_url": url,
        "mqtt_url": mqtt_broker.url,
        "topic_prefix": topic_prefix,
        "client_id": f"ingest-{topic_prefix[:13]}",
        "replay_poll_s": 3600,  # only a notification, or the pass at start, can find a request here
    }
    topic = f"{topic_prefix}/jakarta/air/aq-new"
    t0 = ten_minutes_ago()
    with ingesting(**settings):
        publish_all(mqtt_broker.port, [(topic, json.dumps({"ts": t0, "pm25": 1}).encode())])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected") == 1)
        with psycopg.connect(url) as conn:
            insert_sensor(conn, SensorSpec.model_validate({"sensor_id": "aq-new", **AIR}))
        _request_all(url)
        wait_until(lambda: scalar(url, "SELECT replay_outcome FROM rejected") == "accepted", timeout_s=10)
        assert rows(url, READINGS) == [("aq-new", 1.0)]
        # A message rejected now, replayed while no ingester runs:
        publish_all(mqtt_broker.port, [(topic, json.dumps({"ts": t0 + 1, "pm25": float("nan")}).encode())])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected") == 2)
    _execute(url, "UPDATE rejected SET replay_requested_at = clock_timestamp() WHERE reason = 'non_finite_value'")
    with ingesting(**settings) as ingester:
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected WHERE replay_outcome IS NOT NULL") == 2)
        assert ingester.metrics.replays.labels("non_finite_value")._value.get() == 1
    assert rows(url, OUTCOMES) == [
        ("aq-new", "unknown_sensor", "accepted", True),
        ("aq-new", "non_finite_value", "non_finite_value", True),
    ]
