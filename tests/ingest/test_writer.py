"""Writing batches into a real PostgreSQL: readings, duplicates, conflicts, dirty windows, counters, rejections."""

from __future__ import annotations

import json
import math
import time

import psycopg
import pytest

from ingest.writer import BatchWriter
from livinglab.quality import LATENCY_BUCKET_EDGES_S
from livinglab.storage import CHANNEL_DIRTY
from tests.support.ingest import Harness, message, ten_minutes_ago
from tests.support.roles import rows
from tests.support.sensors import register

pytestmark = pytest.mark.integration

MINUTE = 60.0
READINGS = (
    "SELECT s.sensor_id, q.name, r.value FROM readings r JOIN sensors s USING (sensor_key)"
    " JOIN quantities q ON q.code = r.quantity ORDER BY 1, 2, 3"
)
WINDOWS = "SELECT sensor_key, quantity, extract(epoch FROM window_start), version FROM dirty_windows ORDER BY 1, 2, 3"
COUNTERS = (
    "SELECT sensor_key, messages, accepted, rejected, duplicates, late, extract(epoch FROM last_seen)"
    " FROM ingest_counters ORDER BY 1"
)
REJECTED = "SELECT topic, city, kind, sensor_id, sensor_key, reason, payload, payload_size FROM rejected ORDER BY id"


def test_a_batch_lands_in_one_transaction_with_its_tallies(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1", "aq-2")
    t0 = ten_minutes_ago()
    received = time.time()
    messages = [
        message("aq-1", json.dumps({"ts": t0, "pm25": 10, "pm10": 20}).encode(), received_at_s=received),
        message("aq-1", json.dumps({"ts": t0 + 30, "pm25": 11}).encode(), received_at_s=received),
        message("aq-2", json.dumps([{"bn": "aq-2:", "bt": t0 + 60, "n": "pm25", "v": 3}]).encode()),
        message("aq-2", b'{"ts": 1, "pm25": NaN}'),
        message("nobody", b"{}"),
    ]
    for m in messages:
        m.received_at_s = received
    with psycopg.connect(fresh_database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL_DIRTY}")
        result = harness.writer.write(harness.build(messages))
        notifies = list(listener.notifies(timeout=2, stop_after=1))
    assert (result.inserted, result.duplicates, result.late, result.windows) == (4, 0, 0, 3)
    assert {i: r.reason.value for i, r in result.rejections.items()} == {3: "non_finite_value", 4: "unknown_sensor"}
    assert [n.payload for n in notifies] == ["3"]

    assert rows(fresh_database_url, READINGS) == [
        ("aq-1", "pm10", 20.0),
        ("aq-1", "pm25", 10.0),
        ("aq-1", "pm25", 11.0),
        ("aq-2", "pm25", 3.0),
    ]
    windows = rows(fresh_database_url, WINDOWS)
    assert [(k, q, float(w), v) for k, q, w, v in windows] == [(1, 1, t0, 1), (1, 2, t0, 1), (2, 1, t0 + MINUTE, 1)]
    counters = rows(fresh_database_url, COUNTERS)
    assert [c[:6] for c in counters] == [(1, 2, 3, 0, 0, 0), (2, 2, 1, 1, 0, 0)]
    assert float(counters[0][6]) == pytest.approx(received, abs=1e-5)
    latency = rows(fresh_database_url, "SELECT sensor_key, bucket, n FROM ingest_latency ORDER BY 1, 2")
    assert sum(n for _, _, n in latency) == 4
    for key, bucket, _ in latency:
        expected = received - (t0 + (MINUTE if key == 2 else 0))
        assert LATENCY_BUCKET_EDGES_S[bucket - 1] <= expected + 30
        assert expected - 30 <= LATENCY_BUCKET_EDGES_S[bucket]
    nan = b'{"ts": 1, "pm25": NaN}'
    assert rows(fresh_database_url, REJECTED) == [
        ("livinglab/v1/jakarta/air/aq-2", "jakarta", "air", "aq-2", 2, "non_finite_value", nan, len(nan)),
        ("livinglab/v1/jakarta/air/nobody", "jakarta", "air", "nobody", None, "unknown_sensor", b"{}", 2),
    ]


def test_resending_a_batch_stores_nothing_new_and_counts_duplicates(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    payloads = [json.dumps({"ts": t0 + i, "pm25": i}).encode() for i in range(50)]
    first = harness.writer.write(harness.build([message("aq-1", p) for p in payloads]))
    again = harness.writer.write(harness.build([message("aq-1", p) for p in payloads]))
    assert (first.inserted, first.duplicates, first.through_staging) == (50, 0, False)
    assert (again.inserted, again.duplicates, again.through_staging, again.rejections) == (0, 50, True, {})
    assert rows(fresh_database_url, "SELECT count(*), sum(value) FROM readings") == [(50, sum(range(50)))]
    assert rows(fresh_database_url, "SELECT sum(messages), sum(accepted), sum(duplicates) FROM ingest_counters") == [
        (100, 50, 50)
    ]
    assert rows(fresh_database_url, "SELECT version FROM dirty_windows") == [(1,)]  # the resend changed nothing


def test_a_conflicting_value_rejects_its_whole_message(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    harness.writer.write(harness.build([message("aq-1", json.dumps({"ts": t0, "pm25": 5}).encode())]))
    batch = harness.build(
        [
            message("aq-1", json.dumps([{"ts": t0 + 1, "pm25": 1}, {"ts": t0, "pm25": 6}]).encode()),  # conflicts
            message("aq-1", json.dumps({"ts": t0, "pm25": 5, "pm10": 2}).encode()),  # a duplicate and a new one
        ]
    )
    result = harness.writer.write(batch)
    assert [r.reason.value for r in result.rejections.values()] == ["conflicting_duplicate"]
    assert (result.inserted, result.duplicates) == (1, 1)
    assert rows(fresh_database_url, "SELECT quantity, extract(epoch FROM ts), value FROM readings ORDER BY 1, 2") == [
        (1, t0, 5.0),
        (2, t0, 2.0),
    ]
    assert rows(fresh_database_url, "SELECT reason, payload FROM rejected") == [
        ("conflicting_duplicate", batch.messages[0].payload)
    ]


def test_new_readings_bump_a_dirty_window_a_processor_holds(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    harness.writer.write(harness.build([message("aq-1", json.dumps({"ts": t0, "pm25": 5}).encode())]))
    harness.writer.write(harness.build([message("aq-1", json.dumps({"ts": t0 + 5, "pm25": 5}).encode())]))
    assert rows(fresh_database_url, "SELECT version FROM dirty_windows") == [(2,)]


def test_late_readings_are_counted(fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    harness = Harness(fresh_database_url, allowed_lateness_s=120)
    try:
        now = time.time()
        window = math.floor(now / 60) * 60 - 300  # ended 4 minutes ago, more than 2 minutes of lateness
        fresh = math.floor(now / 60) * 60 - 60  # ended now-ish: its window is not final yet
        payload = json.dumps([{"ts": window, "pm25": 1}, {"ts": fresh + 1, "pm25": 1}]).encode()
        result = harness.writer.write(harness.build([message("aq-1", payload)]))
    finally:
        harness.close()
    assert result.late == 1
    assert rows(fresh_database_url, "SELECT late FROM ingest_counters") == [(1,)]


def test_device_text_with_nul_and_lone_surrogates_cannot_fail_a_batch(
    harness: Harness, fresh_database_url: str
) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    messages = [
        message("aq-1", json.dumps({"ts": t0, "pm25": 1}).encode()),
        message("aq-1", json.dumps({"ts": t0, "pm\u0000": 1}).encode()),
        message("aq-1", b'[{"n": "pm25", "u": "\\u0000", "t": 1, "v": 1}]'),
        message("aq-1", b'{"ts": 1, "\\ud800": 1}'),
        message("aq-1", b"\x00\xff\xfe"),
    ]
    messages[-1].topic = "livinglab/v1/jakarta/air/aq-1\x00\ud800"
    result = harness.writer.write(harness.build(messages))
    assert result.inserted == 1
    reasons = rows(fresh_database_url, "SELECT reason, topic, detail FROM rejected ORDER BY id")
    assert [r for r, _, _ in reasons] == ["unknown_quantity", "bad_unit", "invalid_json", "topic_invalid"]
    assert reasons[-1][1] == "livinglab/v1/jakarta/air/aq-1\\x00\\ud800"


def test_a_broken_connection_raises_and_the_next_write_reconnects(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    batch = harness.build([message("aq-1", json.dumps({"ts": ten_minutes_ago(), "pm25": 1}).encode())])
    with psycopg.connect(fresh_database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (harness.writer.connection().info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        harness.writer.write(batch)
    assert harness.writer.write(batch).inserted == 1


def test_writer_is_usable_without_a_service(fresh_database_url: str) -> None:
    writer = BatchWriter(fresh_database_url)
    try:
        assert writer.connection().execute("SELECT 1").fetchone() == (1,)
    finally:
        writer.close()


def test_counters_gathered_over_batches_add_up(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1", "aq-2")
    t0 = ten_minutes_ago()
    batches = [
        [message("aq-1", json.dumps({"ts": t0 + i, "pm25": 1}).encode()) for i in range(3)],
        [message("aq-1", json.dumps({"ts": t0 + 10, "pm25": 1}).encode()), message("aq-2", b"{")],
        [message("aq-2", json.dumps({"ts": t0, "pm25": 2}).encode())],
    ]
    harness.writer.write(harness.build(batches[0]), write_tallies=False)
    harness.writer.write(harness.build(batches[1]), write_tallies=False)
    assert rows(fresh_database_url, "SELECT count(*) FROM ingest_counters") == [(0,)]  # waiting
    assert rows(fresh_database_url, "SELECT count(*) FROM readings") == [(4,)]  # readings never wait
    harness.writer.write(harness.build(batches[2]))
    assert rows(fresh_database_url, COUNTERS.replace(", extract(epoch FROM last_seen)", "")) == [
        (1, 4, 4, 0, 0, 0),
        (2, 2, 1, 1, 0, 0),
    ]
    assert rows(fresh_database_url, "SELECT sum(n) FROM ingest_latency") == [(5,)]
    assert not harness.writer.pending


def test_pending_counters_are_written_before_stopping(harness: Harness, fresh_database_url: str) -> None:
    register(fresh_database_url, "aq-1")
    harness.writer.write(
        harness.build([message("aq-1", json.dumps({"ts": ten_minutes_ago(), "pm25": 1}).encode())]), write_tallies=False
    )
    harness.writer.flush_tallies()
    assert rows(fresh_database_url, "SELECT messages, accepted FROM ingest_counters") == [(1, 1)]
