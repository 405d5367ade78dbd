"""Faults aimed at the processors, under a steady two-city load (`tests.support.city_load`).

Each scenario breaks a processor in the middle of a round: its rollups sleep half a second inside their transaction
(a trigger, for that processor's connections only), and the fault comes while it sleeps, holding claims and the
per-sensor locks. The table reports how long the processor took to notice (detection) and how long after the fault
healed every window queued until then was computed (catch-up); then everything the processors stored is compared
with a clean run over the same readings. Leases are ten minutes where the processor must take its own claims back
(catching up well before that shows it did) and three seconds where another processor must take them over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from livinglab.launch import RoleProcess
from processing import Processor, ProcessorSettings
from tests.support.city_load import (
    CityLoad,
    backlog_since,
    database_now,
    differing,
    idle,
    recompute,
    register_city,
    result_rows,
    snapshot,
)
from tests.support.faults import FaultTable, Recovery
from tests.support.proxy import FaultProxy
from tests.support.roles import rows, running, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

TIMEOUT_S = 1.0
GRACE_S = 1.0
DEADLINE_S = TIMEOUT_S + GRACE_S
#: How long a broken processor's rollups sleep inside their transaction, holding their claims and sensor locks.
SLOW_S = 0.5
LONG_LEASE_S = 600.0

_SETTINGS: dict[str, Any] = {
    "database_timeout_s": TIMEOUT_S,
    "database_grace_s": GRACE_S,
    "claim_batch": 500,
    "rollup_batch": 50,
    "hour_rollup_delay_s": 0,
    "day_rollup_delay_s": 0,
    "rollup_interval_s": 0.1,
    "poll_interval_s": 0.2,
    "tally_interval_s": 2,
    "claim_lease_s": LONG_LEASE_S,
}

_SLOW = """
CREATE TABLE slow_processors (application_name text PRIMARY KEY, sleep_s float8 NOT NULL);
CREATE FUNCTION slow_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE pause float8;
BEGIN
    SELECT sleep_s INTO pause FROM slow_processors WHERE application_name = current_setting('application_name');
    IF pause IS NOT NULL THEN PERFORM pg_sleep(pause); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slow_rollups AFTER INSERT ON agg_1h FOR EACH STATEMENT EXECUTE FUNCTION slow_rollups();
"""


def _processor(url: str, worker: str, **overrides: Any) -> Processor:
    return Processor(ProcessorSettings(database_url=url, worker_id=worker, **{**_SETTINGS, **overrides}))


def _slow(url: str, *workers: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_SLOW)
        for worker in workers:
            conn.execute("INSERT INTO slow_processors VALUES (%s, %s)", (f"livinglab-{worker}", SLOW_S))


def _sleeping_pid(url: str, worker: str) -> int | None:
    """The backend of `worker` while it sleeps inside a rollup (holding its claims and locks), else None."""
    found = rows(
        url,
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s AND wait_event = 'PgSleep'",
        (f"livinglab-{worker}",),
    )
    return int(found[0][0]) if found else None


def _since(started: float, predicate: Callable[[], Any], timeout_s: float = 60.0) -> float:
    """Seconds from `started` until `predicate()` holds."""
    wait_until(predicate, timeout_s=timeout_s, interval_s=0.02)
    return time.monotonic() - started


@contextmanager
def _city(url: str, *processors: Processor) -> Iterator[CityLoad]:
    """The load and the processors, until the block ends; then the load stops and the processors drain it."""
    load = CityLoad(url, register_city(url), tick_s=0.2)
    with running(*processors):
        load.start()
        try:
            yield load
        finally:
            load.stop()
        wait_until(lambda: idle(url), timeout_s=60, interval_s=0.2)


def _against_clean_run(url: str) -> tuple[int, str]:
    """(rows differing from a clean run over the same readings, what was compared)."""
    faulted = snapshot(url)
    return differing(faulted, recompute(url)), f"{result_rows(faulted):,} result rows"


def _break_in_round(url: str, worker: str, breaking: Callable[[int], None]) -> float:
    """Wait until `worker` sleeps inside a rollup, then call `breaking(its backend pid)`; returns when. Its later
    rounds run at full speed, so the catch-up measured is the processor's own."""
    pid = wait_until(lambda: _sleeping_pid(url, worker), timeout_s=90, interval_s=0.02)
    broken = time.monotonic()
    breaking(pid)
    _fast(url, worker)
    return broken


def _fast(url: str, worker: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM slow_processors WHERE application_name = %s", (f"livinglab-{worker}",))


def _caught_up(url: str, healed: float) -> float:
    """Seconds from `healed` until every window queued by then is computed."""
    healed_at = database_now(url)
    return _since(healed, lambda: backlog_since(url, healed_at) == 0)


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_processor_database_link(fault: str, fresh_database_url: str, fault_table: FaultTable) -> None:
    url = fresh_database_url
    _slow(url, "p1")
    with FaultProxy(int(urlsplit(url).port or 5432)) as proxy:
        processor = _processor(proxy.route(url), "p1")
        with _city(url, processor):
            wait_until(lambda: processor.windows > 100, timeout_s=30)
            broken = _break_in_round(url, "p1", lambda _: proxy.blackhole() if fault == "blackhole" else proxy.reset())
            detected_s = _since(broken, lambda: processor.failures > 0)
            time.sleep(max(0.0, (4.0 if fault == "blackhole" else 1.0) - (time.monotonic() - broken)))
            proxy.pass_through()
            healed = time.monotonic()
            outage_s = healed - broken
            caught_up_s = _caught_up(url, healed)
    differ, checked = _against_clean_run(url)
    fault_table.record_recovery(
        Recovery(
            f"processor-database link {fault}",
            detected_s,
            caught_up_s,
            checked,
            differ,
            0,
            note=f"link down {outage_s:.1f} s; deadline {DEADLINE_S:.0f} s ({TIMEOUT_S:.0f} s timeout +"
            f" {GRACE_S:.0f} s grace); took back {processor.taken_back} claimed windows (lease {LONG_LEASE_S:.0f} s)",
        )
    )
    assert processor.taken_back > 0  # the round in hand was taken back, not left to its ten-minute lease


def test_processor_backend_terminated(fresh_database_url: str, fault_table: FaultTable) -> None:
    url = fresh_database_url
    _slow(url, "p1")
    processor = _processor(url, "p1")
    with _city(url, processor), psycopg.connect(url, autocommit=True) as admin:
        wait_until(lambda: processor.windows > 100, timeout_s=30)
        broken = _break_in_round(url, "p1", lambda pid: admin.execute("SELECT pg_terminate_backend(%s)", (pid,)))
        detected_s = _since(broken, lambda: processor.failures > 0)
        caught_up_s = _caught_up(url, broken)
    differ, checked = _against_clean_run(url)
    fault_table.record_recovery(
        Recovery(
            "processor backend terminated (pg_terminate_backend)",
            detected_s,
            caught_up_s,
            checked,
            differ,
            0,
            note=f"took back {processor.taken_back} claimed windows (lease {LONG_LEASE_S:.0f} s)",
        )
    )
    assert processor.taken_back > 0


def _role(url: str, worker: str, log_dir: Path) -> RoleProcess:
    env = {f"LIVINGLAB_{k.upper()}": str(v) for k, v in _SETTINGS.items()}
    env |= {"LIVINGLAB_DATABASE_URL": url, "LIVINGLAB_WORKER_ID": worker, "LIVINGLAB_LOG_LEVEL": "INFO"}
    return RoleProcess("process", env, log_dir, name=worker)


def _connected(url: str, worker: str) -> bool:
    query = "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
    return bool(rows(url, query, (f"livinglab-{worker}",)))


def test_processor_killed_mid_round_and_restarted(
    fresh_database_url: str, fault_table: FaultTable, tmp_path: Path
) -> None:
    url = fresh_database_url
    _slow(url, "pk")
    load = CityLoad(url, register_city(url), tick_s=0.2).start()
    first, second = _role(url, "pk", tmp_path), _role(url, "pk", tmp_path)
    try:
        first.start()
        backends: list[int] = []

        def kill(pid: int) -> None:
            first.kill()
            backends.append(pid)

        broken = _break_in_round(url, "pk", kill)
        gone = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
        detected_s = _since(broken, lambda: not rows(url, gone, (backends[0],)))  # the server ended the round
        killed_at = database_now(url)
        second.start()
        wait_until(lambda: _connected(url, "pk"), timeout_s=60, interval_s=0.05)
        restarted = time.monotonic()
        caught_up_s = _since(restarted, lambda: backlog_since(url, killed_at) == 0)
        restart_s = restarted - broken
    finally:
        load.stop()
    try:
        wait_until(lambda: idle(url), timeout_s=60, interval_s=0.2)
    finally:
        second.stop()
    log = second.log_path.read_text(errors="replace")
    differ, checked = _against_clean_run(url)
    fault_table.record_recovery(
        Recovery(
            "processor SIGKILL mid-round, restarted with its worker id",
            detected_s,
            caught_up_s,
            checked,
            differ,
            0,
            note=f"detected: its backend ended; caught up: from the restart's first connection ({restart_s:.1f} s"
            f" after the kill); lease {LONG_LEASE_S:.0f} s",
        )
    )
    assert "took back" in log, log[-2000:]


def _lock_waits(url: str, worker: str, stop: threading.Event, longest: list[float]) -> None:
    """Sample how long `worker`'s current statement has been waiting for a lock; keep the longest."""
    query = (
        "SELECT extract(epoch FROM now() - query_start) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s AND wait_event_type = 'Lock'"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.02):
            for (waited,) in conn.execute(query, (f"livinglab-{worker}",)):
                longest[0] = max(longest[0], float(waited))


def test_one_of_two_processors_cut_off_holding_locks(fresh_database_url: str, fault_table: FaultTable) -> None:
    url = fresh_database_url
    _slow(url, "p1")
    stop, longest = threading.Event(), [0.0]
    sampler = threading.Thread(target=_lock_waits, args=(url, "p2", stop, longest), daemon=True)
    with FaultProxy(int(urlsplit(url).port or 5432)) as proxy:
        cut_off = _processor(proxy.route(url), "p1", claim_lease_s=3.0)
        healthy = _processor(url, "p2", claim_lease_s=3.0)
        with _city(url, cut_off, healthy) as load:
            wait_until(lambda: cut_off.windows > 50 and healthy.windows > 50, timeout_s=30)
            sampler.start()
            broken = _break_in_round(url, "p1", lambda _: proxy.blackhole())
            windows_before, readings_before = healthy.windows, load.readings
            detected_s = _since(broken, lambda: cut_off.failures > 0)
            time.sleep(max(0.0, 5.0 - (time.monotonic() - broken)))
            windows_during, readings_during = healthy.windows - windows_before, load.readings - readings_before
            proxy.pass_through()
            healed = time.monotonic()
            outage_s = healed - broken
            caught_up_s = _caught_up(url, healed)
            stop.set()
        sampler.join(timeout=10)
    differ, checked = _against_clean_run(url)
    fault_table.record_recovery(
        Recovery(
            "one of two processors cut off holding sensor locks",
            detected_s,
            caught_up_s,
            checked,
            differ,
            0,
            note=f"link down {outage_s:.1f} s; the healthy one computed {windows_during:,} windows meanwhile"
            f" ({readings_during:,} readings arrived), longest lock wait {longest[0]:.1f} s (deadline"
            f" {DEADLINE_S:.0f} s)",
        )
    )
    assert windows_during > 0  # the healthy processor went on working while the other was cut off
