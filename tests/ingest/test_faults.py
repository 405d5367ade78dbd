"""Faults under steady load, against a real Mosquitto and a real PostgreSQL: the ingester killed with SIGKILL three
times, the database stopped for 15 seconds, the broker restarted, two ingesters on one shared subscription.

In every case the publisher counts the readings the broker acknowledged (PUBACK); afterwards each of them must be in
the database exactly once, with its value, and nothing may be rejected.
"""

from __future__ import annotations

import math
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from livinglab.embedded import MosquittoBroker, free_port
from livinglab.storage import migrate
from tests.ingest.conftest import register
from tests.ingest.helpers import IngesterProcess, LoadPublisher, ingesting
from tests.support.postgres import OwnPostgres
from tests.support.roles import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

SENSORS = ["aq-1", "aq-2", "aq-3", "aq-4"]
_STORED = (
    "SELECT s.sensor_id, round(extract(epoch FROM r.ts)::numeric, 2)::float8, r.value, count(*) OVER"
    " (PARTITION BY r.sensor_key, r.quantity, r.ts) FROM readings r JOIN sensors s USING (sensor_key)"
)


def _base_ts() -> float:
    return math.floor(time.time() / 60) * 60 - 3600


def assert_every_acknowledged_reading_stored_once(url: str, load: LoadPublisher) -> None:
    expected = load.expected_values()
    assert len(expected) > 1000, "the load did not get going"

    def stored() -> dict[tuple[str, float], tuple[float, int]]:
        with psycopg.connect(url, autocommit=True) as conn:
            return {(s, ts): (v, n) for s, ts, v, n in conn.execute(_STORED)}

    wait_until(lambda: expected.keys() <= stored().keys(), timeout_s=90, interval_s=0.5)
    rows = stored()
    assert all(n == 1 for _, n in rows.values())
    assert {key: rows[key][0] for key in expected} == expected
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT reason, count(*) FROM rejected GROUP BY 1").fetchall() == []


def _health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_sigkill_three_times_during_steady_load_loses_nothing(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, tmp_path: Path
) -> None:
    register(fresh_database_url, *SENSORS)
    health_port = free_port()
    ingester = IngesterProcess(
        tmp_path / "ingest.log",
        database_url=fresh_database_url,
        mqtt_url=own_broker.url,
        topic_prefix=topic_prefix,
        client_id="ingest-killed",
        batch_interval_ms=50,
        health_port=health_port,
    ).start()
    try:
        wait_until(lambda: _health_ok(health_port), timeout_s=60)
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=100, base_ts=_base_ts()).start()
        for _ in range(3):
            time.sleep(3)
            ingester.kill()
            time.sleep(0.5)
            ingester.start()
        time.sleep(3)
        load.stop()
        assert_every_acknowledged_reading_stored_once(fresh_database_url, load)
    finally:
        code = ingester.stop()
    assert ingester.starts == 4
    assert code == 0, ingester.log()[-3000:]


def test_a_15_second_database_outage_delays_data_and_drops_none(
    own_postgres: OwnPostgres, own_broker: MosquittoBroker, topic_prefix: str
) -> None:
    url = own_postgres.url
    migrate(url)
    register(url, *SENSORS)
    settings = {
        "database_url": url,
        "mqtt_url": own_broker.url,
        "topic_prefix": topic_prefix,
        "receive_maximum": 400,
        "batch_size": 200,
        "keepalive_s": 5,
        "database_retry_max_s": 2,
    }
    with ingesting(**settings) as ingester:
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=50, base_ts=_base_ts()).start()
        time.sleep(3)
        own_postgres.stop()
        wait_until(lambda: ingester.health()[1]["database"]["status"] == "down", timeout_s=10)
        time.sleep(15)
        assert not ingester.health()[0]
        assert ingester.link is not None
        assert ingester.link.connections == 1  # keepalives went on while nothing could be committed
        assert ingester.inbox.high_water <= 400  # the broker held the backlog, not the ingester
        own_postgres.resume()
        time.sleep(3)
        load.stop()
        assert_every_acknowledged_reading_stored_once(url, load)
        wait_until(lambda: ingester.health()[0])
        # Draining the backlog, Mosquitto before 2.0.13 oversteps the window; the inbox limit still holds.
        assert ingester.inbox.high_water <= ingester.settings.inbox_limit


def test_a_broker_restart_during_load_loses_nothing(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str
) -> None:
    register(fresh_database_url, *SENSORS)
    settings = {
        "database_url": fresh_database_url,
        "mqtt_url": own_broker.url,
        "topic_prefix": topic_prefix,
        "client_id": "ingest-restart",
        "reconnect_max_s": 1,
    }
    with ingesting(**settings) as ingester:
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=100, base_ts=_base_ts()).start()
        time.sleep(3)
        own_broker.restart()
        time.sleep(4)
        load.stop()
        assert_every_acknowledged_reading_stored_once(fresh_database_url, load)
        assert ingester.link is not None
        assert ingester.link.connections == 2
        assert ingester.link.session_present  # the broker kept the session across its restart


def test_two_ingesters_on_one_shared_subscription_store_everything_once(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, tmp_path: Path
) -> None:
    register(fresh_database_url, *SENSORS)
    ports = [free_port(), free_port()]
    ingesters = [
        IngesterProcess(
            tmp_path / f"ingest-{i}.log",
            database_url=fresh_database_url,
            mqtt_url=own_broker.url,
            topic_prefix=topic_prefix,
            client_id=f"ingest-shared-{i}",
            shared_group="ingest",
            health_port=port,
        ).start()
        for i, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_until(lambda port=port: _health_ok(port), timeout_s=60)
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=100, base_ts=_base_ts()).start()
        time.sleep(6)
        load.stop()
        assert_every_acknowledged_reading_stored_once(fresh_database_url, load)
        taken = [_metric(port, "livinglab_ingest_messages_total") for port in ports]
    finally:
        codes = [i.stop() for i in ingesters]
    assert codes == [0, 0]
    assert all(n > 0 for n in taken), taken  # both took a share
    assert sum(taken) == len(load.acknowledged)
