"""The broker restarted under load, cleanly and by SIGKILL, with the shipped persistence settings; and a control run
with persistence off, which must lose readings (else the oracle could not see a loss).

While the database stalls, a backlog queues in the broker; then the broker restarts. Mosquitto writes its state to
disk every `autosave_interval` seconds (1 s in the shipped config), and its check is strict, so after a SIGKILL up to
about two intervals of messages it accepted but had not yet delivered are gone: that is the broker's durability
window, not the platform's. The crash runs therefore let the publisher go quiet for 2.5 s before the kill, so the
persistence run shows what the shipped settings keep, and the control run, identical but for persistence, shows what
the oracle sees when they are missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from livinglab.embedded import MosquittoBroker
from tests.support.faults import SENSORS, FaultTable, base_ts
from tests.support.ingest import LoadPublisher, ingesting
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

CASES = {
    "clean": ("broker clean restart", True, False),
    "crash": ("broker crash restart (SIGKILL)", True, True),
    "control": ("CONTROL: broker crash, persistence off", False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broker_restart_under_load(
    case: str, fresh_database_url: str, tmp_path: Path, topic_prefix: str, fault_table: FaultTable
) -> None:
    scenario, persistence, crash = CASES[case]
    url = fresh_database_url
    register(url, *SENSORS)
    broker = MosquittoBroker(tmp_path / "mosquitto", persistence=persistence)
    broker.start()
    settings = {
        "database_url": url,
        "mqtt_url": broker.url,
        "topic_prefix": topic_prefix,
        "client_id": f"ingest-{topic_prefix[:13]}",
        "reconnect_max_s": 1,
        # A small window, so that while the database stalls the backlog waits in the broker, where a crash can
        # lose it, and not in the ingester.
        "receive_maximum": 100,
        "batch_size": 50,
    }
    try:
        with ingesting(**settings) as ingester, psycopg.connect(url) as blocker:
            load = LoadPublisher(broker.port, topic_prefix, SENSORS, rate_per_s=75, base_ts=base_ts()).start()
            try:
                time.sleep(2)
                blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")  # the ingester stalls
                time.sleep(2)
                if crash:
                    load.stop()
                    time.sleep(2.5)  # two autosave intervals: the backlog is on disk (see the module docstring)
                backlog = len(load.acknowledged) - int(ingester.metrics.messages._value.get())
                broker.restart(crash=crash)
                blocker.rollback()
                time.sleep(3)
            finally:
                load.stop()
            assert ingester.link is not None
            resumed = ingester.link.session_present
            outcome = fault_table.check(
                url,
                load,
                scenario,
                expect_loss=not persistence,
                note=f"backlog at restart ~{backlog}; session {'resumed' if resumed else 'lost'}",
            )
            assert resumed == persistence, outcome
    finally:
        broker.stop()
