"""The ingester against a real Mosquitto and a real PostgreSQL: every reason code end to end, acknowledgement only
after COMMIT, registry changes, notices, metrics and health, bounded memory while the database stalls."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest

from ingest.broker import probe_protocol
from livinglab.domain import MESSAGE_REASONS, RejectionReason
from livinglab.embedded import AmqttBroker, MosquittoBroker
from livinglab.sensors import SensorSpec
from livinglab.settings import MqttUrl
from livinglab.storage.registry import insert_sensor
from tests.ingest.mqtt_spy import MqttSpy
from tests.support import sensors
from tests.support.ingest import Notices, ingesting, publish_all, ten_minutes_ago
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import AIR, register

pytestmark = pytest.mark.integration
R = RejectionReason
#: Per sensor, summed over the hours of receipt (a run that crosses an hour has two rows for a sensor).
COUNTERS = (
    "SELECT s.sensor_id, (sum(c.messages), sum(c.accepted), sum(c.rejected), sum(c.duplicates))::text"
    " FROM ingest_counters c JOIN sensors s USING (sensor_key) GROUP BY s.sensor_id"
)


def _settings(url: str, broker: MosquittoBroker, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": url,
        "mqtt_url": broker.url,
        "topic_prefix": prefix,
        "client_id": f"ingest-{prefix[:13]}",
        "rejected_payload_cap_bytes": 512 * 1024,
        **extra,
    }


def test_every_reason_code_end_to_end_and_the_good_readings_all_stored(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1", "aq-2", sensors.traffic("tc-1"))
    t0 = ten_minutes_ago()
    air, traffic = f"{topic_prefix}/jakarta/air", f"{topic_prefix}/jakarta/traffic"
    senml = [{"bn": "urn:dev:livinglab:aq-1:", "bt": t0 + 60, "n": "no2", "u": "ppb", "v": 24.45}]
    good = [
        (f"{air}/aq-1", json.dumps({"ts": t0, "pm25": 41.3, "pm10": 63}).encode()),
        (f"{air}/aq-1", json.dumps(senml).encode()),
        (f"{air}/aq-2", json.dumps([{"ts": t0, "temp": 30.5}, {"ts": t0 + 60, "rh": 80}]).encode()),
        (f"{traffic}/tc-1", json.dumps({"ts": t0, "sm": 120, "kr": 40, "kb": 3, "speed": 31.5}).encode()),
        (f"{air}/aq-2", json.dumps({"ts": t0 + 120, "pm25": 9}).encode()),
        (f"{air}/aq-2", json.dumps({"ts": t0 + 120, "pm25": 9}).encode()),  # a resend: a duplicate, not a rejection
    ]
    bad = [
        (f"{topic_prefix}/jakartä/air/aq-1", b'{"ts": 1, "pm25": 1}', R.TOPIC_INVALID),
        (f"{topic_prefix}/jakarta/water/aq-1", b'{"ts": 2, "pm25": 1}', R.TOPIC_INVALID),
        (f"{air}/nobody", b'{"ts": 3, "pm25": 1}', R.UNKNOWN_SENSOR),
        (f"{topic_prefix}/bandung/air/aq-1", b'{"ts": 4, "pm25": 1}', R.UNKNOWN_SENSOR),
        (f"{traffic}/aq-1", b'{"ts": 5, "pm25": 1}', R.KIND_MISMATCH),
        (f"{air}/aq-1", b"x" * (256 * 1024 + 1), R.PAYLOAD_TOO_LARGE),
        (f"{air}/aq-1", b'{"ts": 6, "pm25": "\xff"}', R.INVALID_UTF8),
        (f"{air}/aq-1", b'{"ts": %d, "pm25": NaN}' % t0, R.NON_FINITE_VALUE),
        (f"{air}/aq-1", b'{"ts": %d, "pm25": "-Infinity"}' % t0, R.NON_FINITE_VALUE),
        (f"{air}/aq-1", b'{"ts": 7, "pm25": 41.3', R.INVALID_JSON),
        (f"{air}/aq-1", b"[" * 10_000 + b"]" * 10_000, R.INVALID_JSON),
        (f"{air}/aq-1", b'{"ts": %d, "pm\\ud80025": 1}' % t0, R.INVALID_JSON),
        (f"{air}/aq-1", b'{"ts": %d, "pm25": "a\x00"}' % t0, R.INVALID_JSON),
        (f"{air}/aq-1", b'{"ts": %d, "pm25": 1, "pm25": 2}' % t0, R.DUPLICATE_KEY),
        (f"{air}/aq-1", b'{"ts": "2026-11-28T10:00:00", "pm25": 1}', R.INVALID_SHAPE),
        (f"{air}/aq-1", json.dumps({"ts": t0, "pm1\u0000": 1}).encode(), R.UNKNOWN_QUANTITY),
        (f"{air}/aq-1", json.dumps({"ts": t0, "sm": 1}).encode(), R.KIND_MISMATCH),
        (f"{air}/aq-1", json.dumps([{"n": "pm25", "u": "ppm", "t": t0, "v": 1}]).encode(), R.BAD_UNIT),
        (f"{air}/aq-1", b'{"ts": %d, "pm25": %s}' % (t0, b"9" * 5000), R.OUT_OF_RANGE),
        (f"{air}/aq-1", json.dumps({"ts": time.time() + 3600, "pm25": 1}).encode(), R.TIMESTAMP_IN_FUTURE),
        (f"{air}/aq-1", json.dumps({"ts": t0 * 1000, "pm25": 1}).encode(), R.TIMESTAMP_IN_FUTURE),
        (f"{air}/aq-1", json.dumps({"ts": t0 - 8 * 86400, "pm25": 1}).encode(), R.TIMESTAMP_TOO_OLD),
        (f"{air}/aq-2", json.dumps({"ts": t0 + 120, "pm25": 10, "pm10": 1}).encode(), R.CONFLICTING_DUPLICATE),
    ]
    # A retained message is a way of delivery, which this broker refuses: tests/security/test_retained.py. LoRaWAN
    # uplinks have reasons of their own: tests/ingest/test_lorawan.py.
    assert {reason for _, _, reason in bad} == MESSAGE_REASONS
    notices = Notices(mqtt_broker.port, topic_prefix)
    try:
        with ingesting(**_settings(fresh_database_url, mqtt_broker, topic_prefix)):
            publish_all(mqtt_broker.port, good[:-1])
            publish_all(mqtt_broker.port, [good[-1]] + [(t, p) for t, p, _ in bad])
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected") == len(bad), timeout_s=60)
            wait_until(lambda: len(notices.received) >= 4)
    finally:
        notices.close()

    stored = rows(
        fresh_database_url,
        "SELECT s.sensor_id, q.name, extract(epoch FROM r.ts)::float8 - %s, r.value FROM readings r"
        " JOIN sensors s USING (sensor_key) JOIN quantities q ON q.code = r.quantity ORDER BY 1, 2, 3",
        (t0,),
    )
    assert [(s, q, dt, pytest.approx(v)) for s, q, dt, v in stored] == [
        ("aq-1", "no2", 60, pytest.approx(46.0055)),
        ("aq-1", "pm10", 0, 63.0),
        ("aq-1", "pm25", 0, 41.3),
        ("aq-2", "pm25", 120, 9.0),
        ("aq-2", "rh", 60, 80.0),
        ("aq-2", "temp", 0, 30.5),
        ("tc-1", "kb", 0, 3.0),
        ("tc-1", "kr", 0, 40.0),
        ("tc-1", "sm", 0, 120.0),
        ("tc-1", "speed", 0, 31.5),
    ]
    by_payload = {
        bytes(p): (r, t, d)
        for p, r, t, d in rows(fresh_database_url, "SELECT payload, reason, topic, detail FROM rejected")
    }
    for _, payload, reason in bad:
        got, _, detail = by_payload[payload]
        assert got == reason.value, (reason, detail)
        assert "\x00" not in detail
    counters = dict(rows(fresh_database_url, COUNTERS))
    assert counters == {"aq-1": "(21,3,19,0)", "aq-2": "(4,3,1,1)", "tc-1": "(1,4,0,0)"}

    topics = {t for t, _, _, _ in notices.received}
    assert f"{topic_prefix}/jakarta/air/nobody/errors" in topics
    assert all(t.endswith("/errors") for t in topics)
    for _, notice, qos, retained in notices.received:
        assert set(notice) == {"reason", "detail", "received_at"}
        assert notice["reason"] in {r.value for r in RejectionReason}
        assert notice["received_at"].endswith("Z")
        assert (qos, retained) == (0, False)


def test_acknowledgements_leave_only_after_commit(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    seen_at_ack: list[int] = []

    def check_committed(payload: bytes) -> None:
        ts = json.loads(payload)["ts"]
        seen_at_ack.append(
            scalar(fresh_database_url, "SELECT count(*) FROM readings WHERE ts = to_timestamp(%s)", (ts,))
        )

    spy = MqttSpy(mqtt_broker.port, mqtt5=True, on_puback=check_committed)
    settings = _settings(fresh_database_url, mqtt_broker, topic_prefix, mqtt_url=f"mqtt://127.0.0.1:{spy.port}")
    try:
        with ingesting(**settings), psycopg.connect(fresh_database_url) as blocker:
            blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")  # the batch cannot commit
            publish_all(
                mqtt_broker.port,
                [
                    (f"{topic_prefix}/jakarta/air/aq-1", json.dumps({"ts": t0 + i, "pm25": i}).encode())
                    for i in range(20)
                ],
            )
            time.sleep(2)
            assert spy.pubacks == []  # received, written, not committed: nothing acknowledged
            blocker.rollback()
            wait_until(lambda: len(spy.pubacks) == 20)
    finally:
        spy.close()
    assert seen_at_ack == [1] * 20  # each reading was committed when its PUBACK left the ingester


def test_a_sensor_registered_a_moment_ago_is_accepted(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-0")
    topic = f"{topic_prefix}/jakarta/air/aq-new"
    with ingesting(**_settings(fresh_database_url, mqtt_broker, topic_prefix, registry_refresh_s=3600)) as ingester:
        publish_all(mqtt_broker.port, [(topic, json.dumps({"ts": ten_minutes_ago(), "pm25": 1}).encode())])
        wait_until(
            lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected WHERE reason = 'unknown_sensor'") == 1
        )
        # Through the registry functions (as the API does): committed, NOTIFY sent, published right away.
        with psycopg.connect(fresh_database_url) as conn:
            insert_sensor(conn, SensorSpec.model_validate({"sensor_id": "aq-new", **AIR}))
        publish_all(mqtt_broker.port, [(topic, json.dumps({"ts": ten_minutes_ago() + 1, "pm25": 1}).encode())])
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 1)
        wait_until(lambda: ingester.sensors.get("aq-new") is not None)
        # Behind the registry's back (no NOTIFY): the miss itself triggers a lookup.
        with psycopg.connect(fresh_database_url) as conn:
            conn.execute(
                "INSERT INTO sensors (sensor_id, city, district, kind, name, lat, lon) VALUES"
                " ('aq-quiet', 'jakarta', 'Menteng', 'air', 'aq-quiet', 0, 0)"
            )
        publish_all(
            mqtt_broker.port,
            [(f"{topic_prefix}/jakarta/air/aq-quiet", json.dumps({"ts": ten_minutes_ago(), "pm25": 2}).encode())],
        )
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 2)
    assert scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 1


def test_notices_are_rate_limited_per_device(
    fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1", "aq-2")
    notices = Notices(mqtt_broker.port, topic_prefix)
    try:
        with ingesting(**_settings(fresh_database_url, mqtt_broker, topic_prefix, error_notice_interval_s=60)):
            bad = [(f"{topic_prefix}/jakarta/air/{s}", b"not json") for s in ("aq-1", "aq-2") for _ in range(5)]
            publish_all(mqtt_broker.port, bad)
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 10)
            wait_until(lambda: len(notices.received) == 2)
            time.sleep(0.5)
    finally:
        notices.close()
    assert sorted(t for t, _, _, _ in notices.received) == [
        f"{topic_prefix}/jakarta/air/aq-1/errors",
        f"{topic_prefix}/jakarta/air/aq-2/errors",
    ]
    assert {n["reason"] for _, n, _, _ in notices.received} == {"invalid_json"}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_and_health_follow_the_broker(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1")
    settings = _settings(fresh_database_url, own_broker, topic_prefix, health_port=0, reconnect_max_s=1)
    with ingesting(**settings) as ingester:
        assert ingester.health_server is not None
        base = f"http://127.0.0.1:{ingester.health_server.port}"
        publish_all(
            own_broker.port,
            [
                (f"{topic_prefix}/jakarta/air/aq-1", json.dumps({"ts": ten_minutes_ago(), "pm25": 1}).encode()),
                (f"{topic_prefix}/jakarta/air/aq-1", b"{"),
            ],
        )
        wait_until(lambda: ingester.batches >= 1 and scalar(fresh_database_url, "SELECT count(*) FROM rejected") == 1)
        status, body = _get(f"{base}/health")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["checks"]["broker"]["protocol"] == "5"
        wait_until(lambda: b"livinglab_ingest_readings_accepted_total 1.0" in _get(f"{base}/metrics")[1])
        text = _get(f"{base}/metrics")[1].decode()
        for line in (
            'livinglab_ingest_messages_rejected_total{reason="invalid_json"} 1.0',
            "livinglab_ingest_messages_total 2.0",
            "livinglab_ingest_batch_messages_count",
            "livinglab_ingest_commit_seconds_bucket",
            "livinglab_ingest_ack_lag_seconds_bucket",
            "livinglab_ingest_readings_duplicate_total 0.0",
        ):
            assert line in text
        # Every stage's thread has its CPU time counted (tests/ingest/test_metrics.py checks the figures).
        stage_cpu = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^livinglab_ingest_thread_cpu_seconds_total\{stage="(\w+)"\} (\S+)$', text, re.M)
        }
        assert set(stage_cpu) == {"network", "build", "write", "registry", "replay"}
        own_broker.stop()
        wait_until(lambda: _get(f"{base}/health")[0] == 503)
        assert json.loads(_get(f"{base}/health")[1])["checks"]["broker"]["status"] == "down"
        own_broker.start()
        wait_until(lambda: _get(f"{base}/health")[0] == 200, timeout_s=30)


def test_memory_stays_within_the_in_flight_window_while_the_database_stalls(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    settings = _settings(fresh_database_url, own_broker, topic_prefix, receive_maximum=50, batch_size=20, keepalive_s=5)
    with ingesting(**settings) as ingester, psycopg.connect(fresh_database_url) as blocker:
        blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        topic = f"{topic_prefix}/jakarta/air/aq-1"
        publish_all(
            own_broker.port, [(topic, json.dumps({"ts": t0 + i / 10, "pm25": 1}).encode()) for i in range(2000)]
        )
        time.sleep(12)  # more than twice the keepalive: the connection must survive the stall
        assert ingester.link is not None
        assert ingester.link.connections == 1
        assert ingester.link.received <= 50
        assert ingester.inbox.high_water <= 50
        blocker.rollback()
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 2000, timeout_s=60)


def test_the_protocol_probe(mqtt_broker: MosquittoBroker, tmp_path: Any) -> None:
    assert probe_protocol(MqttUrl.parse(mqtt_broker.url)) == "5"
    amqtt = AmqttBroker(tmp_path / "amqtt")
    amqtt.start()
    try:
        assert probe_protocol(MqttUrl.parse(amqtt.url)) == "3.1.1"
    finally:
        amqtt.stop()


def test_auto_falls_back_to_mqtt_311_on_the_embedded_amqtt_broker(
    fresh_database_url: str, tmp_path: Any, topic_prefix: str
) -> None:
    register(fresh_database_url, "aq-1")
    amqtt = AmqttBroker(tmp_path / "amqtt")
    amqtt.start()
    try:
        settings = {"database_url": fresh_database_url, "mqtt_url": amqtt.url, "topic_prefix": topic_prefix}
        with ingesting(**settings, mqtt_protocol="auto") as ingester:
            assert ingester.protocol == "3.1.1"
            t0 = ten_minutes_ago()
            publish_all(
                amqtt.port,
                [
                    (f"{topic_prefix}/jakarta/air/aq-1", json.dumps({"ts": t0 + i, "pm25": i}).encode())
                    for i in range(50)
                ],
            )
            wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 50)
            assert ingester.link is not None
            wait_until(lambda: ingester.link is not None and ingester.metrics.messages._value.get() == 50)
    finally:
        amqtt.stop()


def test_messages_a_broker_sends_beyond_the_window_come_back_after_a_reconnect(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str
) -> None:
    # Mosquitto before 2.0.13 sends up to a window more per acknowledgement once messages queue up for a client: after
    # the stall below it floods the ingester. The inbox keeps to its limit and gets the rest after a reconnect.
    register(fresh_database_url, "aq-1")
    t0 = ten_minutes_ago()
    settings = _settings(
        fresh_database_url, own_broker, topic_prefix, receive_maximum=20, batch_size=10, inbox_max_messages=40
    )
    with ingesting(**settings) as ingester, psycopg.connect(fresh_database_url) as blocker:
        blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        topic = f"{topic_prefix}/jakarta/air/aq-1"
        publish_all(own_broker.port, [(topic, json.dumps({"ts": t0 + i / 10, "pm25": 1}).encode()) for i in range(600)])
        blocker.rollback()
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM readings") == 600, timeout_s=60)
        assert ingester.inbox.high_water <= 40
        assert ingester.link is not None
        assert ingester.inbox.dropped_unacknowledged == 0 or ingester.link.connections > 1
