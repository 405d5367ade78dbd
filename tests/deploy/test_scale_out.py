"""More than one process per role: two ingesters on one shared subscription and two processors, as separate
processes (`python -m livinglab ingest|process`) against a real Mosquitto and PostgreSQL, under load, with one
ingester killed (SIGKILL) and restarted with the same client id. Every reading is stored exactly once and the
aggregates equal those of a single-process run over the same messages.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from livinglab.launch import RoleProcess, create_database, drop_database, platform_settings, started, unique_name
from tests.deploy.pipeline import NO_ROLLUP_DELAY, senml_pack, stored_results, table_rows, wait_settled
from tests.support.brokers import DebugLoggingBroker
from tests.support.ingest import publish_all
from tests.support.roles import scalar, wait_until
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

SENSORS = [f"aq-{i:02d}" for i in range(30)]
QUANTITIES = ("pm25", "pm10", "no2", "o3")
MESSAGES_PER_SENSOR = 300
TOTAL_READINGS = len(SENSORS) * MESSAGES_PER_SENSOR * len(QUANTITIES)


def _messages(prefix: str, base_s: int) -> list[tuple[str, bytes]]:
    """One message per sensor and second, four readings each, sensors interleaved as a city sends them."""
    rng = random.Random(20261128)
    messages = []
    for j in range(MESSAGES_PER_SENSOR):
        for sensor_id in SENSORS:
            readings = [(q, base_s + j, round(rng.uniform(5.0, 150.0), 2)) for q in QUANTITIES]
            messages.append((f"{prefix}/jakarta/air/{sensor_id}", senml_pack(sensor_id, readings)))
    return messages


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DebugLoggingBroker]:
    with started(DebugLoggingBroker(tmp_path / "mosquitto")) as (broker,):
        yield broker


@pytest.fixture
def two_databases(pg_server_url: str, template_database: str) -> Iterator[tuple[str, str]]:
    names = [unique_name("llt_scale"), unique_name("llt_single")]
    urls = [create_database(pg_server_url, name, template=template_database) for name in names]
    try:
        for url in urls:
            register(url, *SENSORS)
        yield urls[0], urls[1]
    finally:
        for name in names:
            drop_database(pg_server_url, name)


class ClaimWatcher:
    """Samples which processors hold claims on queued windows while the test runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = "SELECT DISTINCT claimed_by FROM dirty_windows WHERE claimed_until > now()"
        while not self._stop.wait(0.02):
            self.seen |= {row[0] for row in table_rows(self.url, query)}

    def __enter__(self) -> ClaimWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_two_ingesters_and_two_processors_store_every_reading_once_through_a_crash(
    broker: DebugLoggingBroker, two_databases: tuple[str, str], tmp_path: Path, topic_prefix: str
) -> None:
    multi, single = two_databases
    run = uuid.uuid4().hex[:8]
    base_s = int(time.time()) // 60 * 60 - 3600
    common = {"LIVINGLAB_BATCH_INTERVAL_MS": "100", "LIVINGLAB_POLL_INTERVAL_S": "0.5"}
    common |= {f"LIVINGLAB_{name.upper()}": str(value) for name, value in NO_ROLLUP_DELAY.items()}

    # Two ingesters on one shared subscription, each with its own fixed client id; two processors.
    prefix = f"{topic_prefix}/multi"
    settings = platform_settings(multi, broker, prefix, LIVINGLAB_SHARED_GROUP=f"g{run}", **common)
    client_ids = [f"ingest-{run}-1", f"ingest-{run}-2"]
    ingesters = [
        RoleProcess("ingest", {**settings, "LIVINGLAB_CLIENT_ID": cid}, tmp_path, name=cid) for cid in client_ids
    ]
    worker_ids = [f"process-{run}-1", f"process-{run}-2"]
    processors = [
        RoleProcess("process", {**settings, "LIVINGLAB_WORKER_ID": wid}, tmp_path, name=wid) for wid in worker_ids
    ]
    messages = _messages(prefix, base_s)
    with started(*ingesters, *processors), ClaimWatcher(multi) as claims:
        wait_until(lambda: all(broker.has_subscribed(cid) for cid in client_ids), timeout_s=60)
        publisher = threading.Thread(
            target=publish_all, args=(broker.port, messages), kwargs={"rate_per_s": 1500, "chunk": 100}
        )
        publisher.start()
        try:
            # Crash one ingester in the middle of the load, with a batch in flight, and bring the same id back.
            wait_until(lambda: scalar(multi, "SELECT count(*) FROM readings") >= TOTAL_READINGS // 4, timeout_s=60)
            # Kill while the broker has messages out to it that it has not acknowledged (between its batches it can
            # have none, and then the kill would test nothing).
            in_flight = wait_until(lambda: broker.unacknowledged(client_ids[0]), timeout_s=30, interval_s=0.01)
            ingesters[0].kill()
            time.sleep(1.0)
            ingesters[0].start()
        finally:
            publisher.join(timeout=120)
        wait_settled(multi, TOTAL_READINGS, timeout_s=180)
        for role in (*ingesters, *processors):
            assert role.running, f"{role.name} exited:\n{role.log_tail()}"

    # The same messages through one ingester and one processor.
    single_prefix = f"{topic_prefix}/single"
    settings = platform_settings(single, broker, single_prefix, **common)
    one_ingester = RoleProcess("ingest", {**settings, "LIVINGLAB_CLIENT_ID": f"ingest-{run}-only"}, tmp_path)
    one_processor = RoleProcess("process", {**settings, "LIVINGLAB_WORKER_ID": f"process-{run}-only"}, tmp_path)
    with started(one_ingester, one_processor):
        wait_until(lambda: broker.has_subscribed(f"ingest-{run}-only"), timeout_s=60)
        publish_all(broker.port, _messages(single_prefix, base_s))
        wait_settled(single, TOTAL_READINGS, timeout_s=180)

    # Exactly once: every key stored (the primary key forbids a second copy) and counted as accepted once.
    assert scalar(multi, "SELECT count(*) FROM readings") == TOTAL_READINGS
    assert scalar(multi, "SELECT sum(accepted) FROM ingest_counters") == TOTAL_READINGS
    multi_results, single_results = stored_results(multi), stored_results(single)
    assert len(multi_results["agg_1m"]) >= len(SENSORS) * len(QUANTITIES) * 5
    assert multi_results == single_results

    # Both ingesters took a share of the load, and both processors claimed work. The killed ingester had messages
    # in flight: the broker sent them again (DUP) to the same client id when it came back, and none is doubled.
    sent = broker.publishes_sent()
    assert all(sent.get(cid, 0) > 0 for cid in client_ids), sent
    assert broker.publishes_sent(redelivered=True).get(client_ids[0], 0) > 0, f"{in_flight} in flight at the kill"
    assert set(worker_ids) <= claims.seen, claims.seen
