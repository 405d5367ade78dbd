"""Broken links through the fault proxy: between ingester and broker, and between ingester and database.

A blackholed link gives no error at all (the proxy's kernel keeps TCP alive), so only the ingester's own watchdogs
can notice: the table reports how long that took. A reset link fails at once. Either way nothing may hang: once
the link heals, every acknowledged reading is stored once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from ingest import Ingester
from livinglab.embedded import MosquittoBroker
from tests.support.faults import SENSORS, FaultTable, base_ts
from tests.support.ingest import LoadPublisher, ingesting
from tests.support.proxy import FaultProxy
from tests.support.roles import wait_until
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

KEEPALIVE_S = 5
DATABASE_TIMEOUT_S = 2.0
#: The ingester drops a silent database connection this long after it sent a query (timeout + its grace).
DATABASE_DEADLINE_S = DATABASE_TIMEOUT_S + 5.0


def _detect(broken: float, is_detected: object, timeout_s: float) -> float:
    """Seconds from `broken` until `is_detected()` holds."""
    wait_until(is_detected, timeout_s=timeout_s, interval_s=0.05)  # type: ignore[arg-type]
    return time.monotonic() - broken


def _broker_down(ingester: Ingester) -> bool:
    return ingester.link is not None and not ingester.link.connected.is_set()


def _database_down(ingester: Ingester) -> bool:
    return bool(ingester.health()[1]["database"]["status"] == "down")


def _break_under_load(
    proxy: FaultProxy,
    fault: str,
    broker_port: int,
    topic_prefix: str,
    *,
    down: Callable[[], bool],
    detect_timeout_s: float,
    up: Callable[[], bool],
    heal_timeout_s: float,
) -> tuple[LoadPublisher, float]:
    """Publish a load, break the proxied link (`fault`) and heal it once `down()` holds, then wait for `up()`:
    (the load, seconds until the break was detected)."""
    load = LoadPublisher(broker_port, topic_prefix, SENSORS, rate_per_s=100, base_ts=base_ts()).start()
    try:
        time.sleep(2)
        broken = time.monotonic()
        proxy.blackhole() if fault == "blackhole" else proxy.reset()
        detected_s = _detect(broken, down, timeout_s=detect_timeout_s)
        time.sleep(1)
        proxy.pass_through()
        wait_until(up, timeout_s=heal_timeout_s)
        time.sleep(2)
    finally:
        load.stop()
    return load, detected_s


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_broker_link(
    fault: str, fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, fault_table: FaultTable
) -> None:
    url = fresh_database_url
    register(url, *SENSORS)
    with FaultProxy(own_broker.port) as proxy:
        settings = {
            "database_url": url,
            "mqtt_url": proxy.url("mqtt"),
            "topic_prefix": topic_prefix,
            "client_id": f"ingest-{topic_prefix[:13]}",
            "keepalive_s": KEEPALIVE_S,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1,
        }
        with ingesting(**settings) as ingester:
            load, detected_s = _break_under_load(
                proxy,
                fault,
                own_broker.port,
                topic_prefix,
                down=lambda: _broker_down(ingester),
                detect_timeout_s=4 * KEEPALIVE_S,
                up=lambda: ingester.link is not None and ingester.link.connected.is_set(),
                heal_timeout_s=30,
            )
            ratio = detected_s / KEEPALIVE_S
            fault_table.check(
                url,
                load,
                f"ingester-broker link {fault}",
                note=f"detected in {detected_s:.1f} s = {ratio:.2f}x keepalive {KEEPALIVE_S} s",
            )
    assert ratio < 2.5


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_database_link(
    fault: str,
    fresh_database_url: str,
    own_broker: MosquittoBroker,
    topic_prefix: str,
    fault_table: FaultTable,
) -> None:
    register(fresh_database_url, *SENSORS)
    with FaultProxy(int(urlsplit(fresh_database_url).port or 5432)) as proxy:
        settings = {
            "database_url": proxy.route(fresh_database_url),
            "mqtt_url": own_broker.url,
            "topic_prefix": topic_prefix,
            "client_id": f"ingest-{topic_prefix[:13]}",
            "database_timeout_s": DATABASE_TIMEOUT_S,
            "database_retry_max_s": 1,
        }
        with ingesting(**settings) as ingester:
            load, detected_s = _break_under_load(
                proxy,
                fault,
                own_broker.port,
                topic_prefix,
                down=lambda: _database_down(ingester),
                detect_timeout_s=3 * DATABASE_DEADLINE_S,
                up=lambda: ingester.health()[0],
                heal_timeout_s=60,
            )
            fault_table.check(
                fresh_database_url,
                load,
                f"ingester-database link {fault}",
                note=f"detected in {detected_s:.1f} s (statement timeout {DATABASE_TIMEOUT_S:.0f} s + 5 s grace)",
            )
    assert ingester.batches > 0
