"""The database goes away or slows down under load.

Outages: a PostgreSQL of the test's own (never the shared server) is shut down for 15 seconds, `fast` (connections
cut, checkpoint) and `immediate` (as a crash: the restart recovers from the WAL); the broker link's keepalive is
shorter than the outage and must go on while nothing can be committed, and the backlog waits in the broker.
Slowness: a trigger makes every batch sleep while the load goes on; the ingester's memory stays within its inbox
limit (the broker holds the backlog) and its health endpoint keeps answering.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from livinglab.embedded import MosquittoBroker
from livinglab.launch import PostgresCluster
from livinglab.storage import migrate
from tests.support.faults import SENSORS, FaultTable, base_ts
from tests.support.ingest import LoadPublisher, ingesting
from tests.support.roles import wait_until
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

OUTAGE_S = 15


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_shutdown_for_15_seconds(
    mode: str, own_postgres: PostgresCluster, own_broker: MosquittoBroker, topic_prefix: str, fault_table: FaultTable
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
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=50, base_ts=base_ts()).start()
        try:
            time.sleep(2)
            own_postgres.stop(mode)
            wait_until(lambda: ingester.health()[1]["database"]["status"] == "down", timeout_s=10)
            time.sleep(OUTAGE_S)
            assert ingester.link is not None
            assert ingester.link.connected.is_set()  # the broker link lived on through the outage
            assert ingester.link.connections == 1  # keepalives went on while nothing could be committed
            assert ingester.inbox.high_water <= 400  # the broker held the backlog, not the ingester
            own_postgres.resume()
            wait_until(lambda: ingester.health()[0], timeout_s=60)
            time.sleep(2)
        finally:
            load.stop()
        fault_table.check(
            url,
            load,
            f"PostgreSQL {mode} shutdown, {OUTAGE_S} s",
            note=f"inbox high water {ingester.inbox.high_water} (limit {ingester.settings.inbox_limit})",
        )


def _get_health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as exc:
        json.loads(exc.read())
        return exc.code


SLOW_TRIGGER = """
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""


def test_slow_database_bounded_memory_and_a_live_health_endpoint(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, fault_table: FaultTable
) -> None:
    url = fresh_database_url
    register(url, *SENSORS)
    settings = {
        "database_url": url,
        "mqtt_url": own_broker.url,
        "topic_prefix": topic_prefix,
        "receive_maximum": 100,
        "batch_size": 50,
        "health_port": 0,
    }
    with ingesting(**settings) as ingester:
        assert ingester.health_server is not None
        port = ingester.health_server.port
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SLOW_TRIGGER)  # each batch now takes at least 0.5 s: 100 messages/s at most
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=75, base_ts=base_ts()).start()
        answers = []
        try:
            for _ in range(16):  # 8 s of a load three times what the database takes
                answers.append(_get_health(port))
                time.sleep(0.5)
            assert ingester.inbox.high_water <= ingester.settings.inbox_limit
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TRIGGER slow_batch ON readings")
            time.sleep(2)
        finally:
            load.stop()
        outcome = fault_table.check(
            url,
            load,
            "slow database (0.5 s per batch)",
            note=f"inbox high water {ingester.inbox.high_water} (limit {ingester.settings.inbox_limit});"
            f" health answered {len(answers)}/16",
        )
    assert answers == [200] * 16, answers
    assert ingester.inbox.high_water <= ingester.settings.inbox_limit, outcome
