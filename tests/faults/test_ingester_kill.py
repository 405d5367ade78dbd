"""The ingester killed with SIGKILL under load, at random moments and at the two moments that matter most: in the
middle of a transaction, and after a COMMIT whose acknowledgements never reached the broker.

The second is hit deterministically, with no hook in the ingester: with the readings table locked, the ingester
holds messages it cannot commit, and the fault proxy between ingester and broker is switched to blackhole; the lock
is released, so the ingester commits what it holds and writes the PUBACKs into a link that carries nothing; once
the rows are stored the ingester is killed and the held link is reset, so the broker never sees those PUBACKs and
sends the messages again to the restarted ingester, which must store each reading once. The `duplicates` counter proves
the point was hit: it counts redelivered readings found already stored.
"""

from __future__ import annotations

import random
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from livinglab.embedded import MosquittoBroker, free_port
from tests.support.faults import SENSORS, FaultTable, base_ts
from tests.support.ingest import IngesterProcess, LoadPublisher
from tests.support.proxy import FaultProxy
from tests.support.roles import scalar, wait_until
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_sigkill_at_random_points_and_between_commit_and_acknowledgement(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, tmp_path: Path, fault_table: FaultTable
) -> None:
    url = fresh_database_url
    register(url, *SENSORS)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    health_port = free_port()
    with FaultProxy(own_broker.port) as proxy:
        ingester = IngesterProcess(
            tmp_path / "ingest.log",
            database_url=url,
            mqtt_url=proxy.url("mqtt"),
            topic_prefix=topic_prefix,
            client_id="ingest-killed",
            batch_interval_ms=50,
            health_port=health_port,
            reconnect_max_s=1,
        )

        def restart() -> None:
            ingester.start()
            wait_until(lambda: health_ok(health_port), timeout_s=60)

        restart()
        load = LoadPublisher(own_broker.port, topic_prefix, SENSORS, rate_per_s=100, base_ts=base_ts()).start()
        points = []

        def duplicates() -> int:
            return int(scalar(url, "SELECT coalesce(sum(duplicates), 0) FROM ingest_counters"))

        try:
            time.sleep(rng.uniform(0.5, 2.5))
            ingester.kill()  # a random point
            points.append("random")
            restart()

            with psycopg.connect(url) as blocker:
                blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
                time.sleep(1.0)  # a batch is now inside its transaction, waiting for the lock
                ingester.kill()
                points.append("mid-transaction")
            restart()

            time.sleep(rng.uniform(0.5, 1.5))
            duplicates_before = duplicates()
            with psycopg.connect(url) as blocker:
                # While the table is locked nothing the ingester receives can be committed, so it holds readings
                # it has not acknowledged when the link goes dark; under the lock the row count is exact.
                blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
                (stored_before,) = blocker.execute("SELECT count(*) FROM readings").fetchone() or (0,)
                time.sleep(0.5)
                proxy.blackhole()
                time.sleep(0.2)  # longer than the proxy's poll tick: the link carries nothing from here on
            # The held batch commits now; its PUBACKs go into the held link.
            wait_until(lambda: scalar(url, "SELECT count(*) FROM readings") > stored_before, timeout_s=30)
            ingester.kill()
            proxy.reset()  # the held PUBACKs die with the link: the broker never sees them
            proxy.pass_through()
            points.append("after COMMIT, before the broker saw the PUBACKs")
            restart()
            # Readings committed before the kill come again and are found stored: the kill fell in the gap.
            wait_until(lambda: duplicates() > duplicates_before, timeout_s=30)

            time.sleep(rng.uniform(0.5, 2.5))
            ingester.kill()
            points.append("random")
            restart()
            time.sleep(2)
        except BaseException:
            ingester.stop()  # a failed step leaves no ingester running into the next test
            raise
        finally:
            load.stop()
        try:
            fault_table.check(
                url,
                load,
                "ingester SIGKILL x4 (random, mid-txn, commit-ack gap)",
                note=f"seed {seed}; redelivered after the gap kill: {duplicates() - duplicates_before}",
            )
        finally:
            code = ingester.stop()
    assert code == 0, ingester.log()[-3000:]
    assert len(points) == 4, points
