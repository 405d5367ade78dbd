"""Claims their owner keeps: taken back after a failure or a restart, renewed while a round runs, and moving on to
other processors seconds after their owner died."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from processing import Processor, ProcessorSettings
from processing.claims import PAST_ROLLUP_WAIT_S, claim_rollups, claim_windows, take_back
from processing.rounds import minute_round
from tests.processing.writes import write_readings
from tests.support.roles import rows, running, wait_until
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration


def _settings(url: str, worker: str, **overrides: Any) -> ProcessorSettings:
    return ProcessorSettings(
        database_url=url,
        worker_id=worker,
        hour_rollup_delay_s=0,
        day_rollup_delay_s=0,
        poll_interval_s=0.2,
        **overrides,
    )


def _backlog(url: str, minutes: int = 30) -> None:
    key = register(url, air("aq-1"))["aq-1"]
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0).timestamp()
    write_readings(url, key, "pm25", start + 60 * np.arange(minutes), np.arange(minutes, dtype=float))


def _claimed_by(url: str, worker: str) -> int:
    return int(rows(url, "SELECT count(*) FROM dirty_windows WHERE claimed_by = %s", (worker,))[0][0])


def _idle(url: str) -> bool:
    return rows(url, "SELECT (SELECT count(*) FROM dirty_windows) + (SELECT count(*) FROM dirty_rollups)") == [(0,)]


def _claim(url: str, worker: str, lease_s: float) -> int:
    """Claim every dirty minute as `worker` and never finish (a processor that died mid-round)."""
    with psycopg.connect(url) as conn:
        return len(claim_windows(conn, worker=worker, limit=1000, lease_s=lease_s))


def test_a_restarted_processor_takes_back_its_claims_at_once(fresh_database_url: str) -> None:
    url = fresh_database_url
    _backlog(url)
    claimed = _claim(url, "p1", lease_s=600)
    assert claimed == 30
    # Another processor leaves them alone: the lease holds for ten minutes.
    with running(Processor(_settings(url, "p2"))):
        time.sleep(2)
        assert _claimed_by(url, "p1") == claimed
    # The same worker id, restarted, takes them back and computes them at once.
    processor = Processor(_settings(url, "p1"))
    with running(processor):
        wait_until(lambda: _idle(url), timeout_s=20)
    assert processor.taken_back == claimed
    assert rows(url, "SELECT count(*) FROM agg_1m") == [(30,)]


def test_a_dead_processors_windows_move_on_when_its_lease_runs_out(fresh_database_url: str) -> None:
    url = fresh_database_url
    _backlog(url)
    _claim(url, "dead", lease_s=1.5)
    started = time.monotonic()
    with running(Processor(_settings(url, "p2"))):
        wait_until(lambda: _idle(url), timeout_s=20)
    assert time.monotonic() - started >= 1.0  # not before the lease ran out
    assert rows(url, "SELECT count(*) FROM agg_1m") == [(30,)]


SLOW_MINUTES = """
CREATE FUNCTION slow_minutes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
CREATE TRIGGER slow_minutes AFTER INSERT ON agg_1m FOR EACH STATEMENT EXECUTE FUNCTION slow_minutes();
"""


def test_the_lease_is_renewed_while_a_round_runs(fresh_database_url: str) -> None:
    url = fresh_database_url
    _backlog(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SLOW_MINUTES)  # the minute round now takes over 3 s, more than twice its lease
    processor = Processor(_settings(url, "p1", claim_lease_s=1.2, claim_batch=1000))
    stolen: list[int] = []
    leases: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(url) as conn:
            while not done.is_set():
                left = conn.execute(
                    "SELECT extract(epoch FROM min(claimed_until) - now()) FROM dirty_windows WHERE claimed_by = 'p1'"
                ).fetchone()
                conn.commit()
                if left and left[0] is not None:
                    leases.append(float(left[0]))
                    # The lease is long past its first end: another processor still gets nothing.
                    if len(leases) > 15:
                        stolen.append(len(claim_windows(conn, worker="p2", limit=1000, lease_s=60)))
                time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    with running(processor):
        watcher.start()
        try:
            wait_until(lambda: _idle(url), timeout_s=30)
        finally:
            done.set()
            watcher.join()
    assert processor.keeper.renewed > 0
    assert len(leases) > 20  # the round was watched for over two seconds
    assert min(leases) > 0  # never expired
    assert stolen
    assert set(stolen) == {0}
    assert rows(url, "SELECT count(*) FROM agg_1m") == [(30,)]


def test_a_failed_round_gives_its_claims_back(fresh_database_url: str) -> None:
    url = fresh_database_url
    _backlog(url)
    processor = Processor(_settings(url, "p1", database_timeout_s=1.0, database_grace_s=1.0, claim_lease_s=600))
    with psycopg.connect(url) as blocker:
        blocker.execute("LOCK TABLE agg_1m IN EXCLUSIVE MODE")  # every round times out while this lasts
        with running(processor):
            wait_until(lambda: processor.failures >= 2, timeout_s=20)
            blocker.rollback()
            wait_until(lambda: _idle(url), timeout_s=20)  # well within the ten-minute lease
    assert processor.taken_back >= 30
    assert rows(url, "SELECT count(*) FROM agg_1m") == [(30,)]


def test_a_past_hour_waits_for_its_queued_minutes(fresh_database_url: str) -> None:
    """Computed while minutes of it are still queued, a past hour would be queued again by the next minute round:
    it is claimed once its minutes are done (or once it waited PAST_ROLLUP_WAIT_S)."""
    url = fresh_database_url
    key = register(url, air("aq-1"))["aq-1"]
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    write_readings(url, key, "pm25", hour.timestamp() + 60 * np.arange(30), np.arange(30, dtype=float))
    settings = _settings(url, "p1", claim_batch=10)

    def hours_claimed(conn: psycopg.Connection[Any]) -> int:
        claim = claim_rollups(conn, worker="p1", limit=100, lease_s=60)
        hours = int(np.count_nonzero(claim.width_s == 3600))
        take_back(conn, worker="p1")
        return hours

    with psycopg.connect(url) as conn:
        assert minute_round(conn, settings) == 10  # the hour is queued; 20 of its minutes still are
        assert rows(url, "SELECT count(*) FROM dirty_rollups WHERE width_s = 3600") == [(1,)]
        assert hours_claimed(conn) == 0
        conn.execute("UPDATE dirty_rollups SET due_at = now() - make_interval(secs => %s)", (PAST_ROLLUP_WAIT_S + 1,))
        conn.commit()
        assert hours_claimed(conn) == 1  # waited long enough: computed anyway
        conn.execute("UPDATE dirty_rollups SET due_at = now()")
        conn.commit()
        while minute_round(conn, settings):
            pass
        assert hours_claimed(conn) == 1  # its minutes are done
