"""Throughput of one versus two processes per role, each started as `python -m livinglab <role>`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.scale._cpu import CpuMeter, backend_pids
from benchmarks.scale._load import create_sessions, publish_backlog, reading_messages, register_sensors
from livinglab.embedded import MosquittoBroker
from livinglab.launch import RoleProcess, drop_database, platform_settings, scratch_database, started
from livinglab.storage import CHANNEL_DIRTY

_DIRTY_ALL = """
INSERT INTO dirty_windows (sensor_key, quantity, window_start)
SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM readings WHERE ts >= %s
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Drain:
    """Work done between the first and the last observation of progress, and the CPU it took."""

    items: int
    seconds: float
    cpu: CpuMeter

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _watch(
    conn: psycopg.Connection[Any],
    query: str,
    target: int,
    meter: CpuMeter,
    on_first: Callable[[], None],
    timeout_s: float = 900.0,
) -> Drain:
    """Poll `query` until it reaches `target`. Time, and meter the CPU, from the first change seen."""
    deadline = time.monotonic() + timeout_s
    first_value = _count(conn, query)
    first_at: float | None = None
    while time.monotonic() < deadline:
        value = _count(conn, query)
        now = time.perf_counter()
        if first_at is None and value != first_value:
            first_value, first_at = value, now
            on_first()
            meter.start()
        if value == target:
            meter.stop()
            if first_at is None or first_value == target:
                raise RuntimeError("the work finished before it could be observed; give the benchmark more load")
            return Drain(abs(target - first_value), now - first_at, meter)
        time.sleep(0.01)
    raise TimeoutError(f"{query!r} did not reach {target} within {timeout_s:.0f} s")


def ingest_drain(
    server_url: str, broker: MosquittoBroker, *, processes: int, per_message: int, messages: int, log_dir: Path
) -> tuple[Drain, float]:
    """Queue `messages` on the broker for `processes` offline ingesters on one shared subscription, start them, and
    time the stored-readings count from its first rise to the total. Returns the drain and the publisher's rate."""
    name, url = scratch_database(server_url, "bench_ingest")
    try:
        sensors = register_sensors(url, 100)
        run = uuid.uuid4().hex[:8]
        prefix, group = f"bench{run}/livinglab/v1", f"g{run}"
        client_ids = [f"bench-ingest-{run}-{i}" for i in range(processes)]
        create_sessions(broker, client_ids, prefix, group)
        publish_rate = publish_backlog(broker, reading_messages(prefix, sensors, per_message, messages))
        settings = platform_settings(url, broker, prefix, LIVINGLAB_SHARED_GROUP=group, LIVINGLAB_LOG_LEVEL="WARNING")
        roles = [
            RoleProcess("ingest", {**settings, "LIVINGLAB_CLIENT_ID": cid}, log_dir, name=cid) for cid in client_ids
        ]
        with started(*roles), psycopg.connect(url, autocommit=True) as conn:
            meter = CpuMeter()
            meter.add("ingesters", [r.pid for r in roles if r.pid])
            meter.add("broker", [broker.pid] if broker.pid else [])

            def on_first() -> None:
                meter.add("PostgreSQL", backend_pids(conn, f"%{run}%"))

            drain = _watch(conn, "SELECT count(*) FROM readings", per_message * messages, meter, on_first)
        return drain, publish_rate
    finally:
        drop_database(server_url, name)


#: Queued minutes, plus queued hours and days that have ended (what aggregating a past hour leaves to do).
_PAST_WORK = (
    "SELECT (SELECT count(*) FROM dirty_windows)"
    " + (SELECT count(*) FROM dirty_rollups WHERE window_start + make_interval(secs => width_s) <= now())"
)


def process_drain(
    url: str,
    *,
    processes: int,
    since: Any,
    log_dir: Path,
    warm_up_s: float = 2.0,
    timeout_s: float = 900.0,
    rollups: bool = False,
    source_tree: Path | None = None,
) -> Drain:
    """Start `processes` processors, let them warm up, queue every 1-minute window of readings at or after `since`,
    and time the queue from its first fall to empty. Counts windows; with `rollups`, waits until the past hours and
    days are computed too (and counts them as well). `source_tree`: run the processors from that checkout's code
    (another commit's, for a before/after on the same tables)."""
    settings = platform_settings(url, None, "bench/livinglab/v1", LIVINGLAB_LOG_LEVEL="WARNING")
    if source_tree is not None:
        # PYTHONSAFEPATH keeps `python -m` from putting the current directory (this checkout) first.
        settings |= {"PYTHONPATH": str(source_tree), "PYTHONSAFEPATH": "1"}
    run = uuid.uuid4().hex[:8]
    roles = [
        RoleProcess("process", {**settings, "LIVINGLAB_WORKER_ID": f"bench-process-{run}-{i}"}, log_dir)
        for i in range(processes)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("agg_1m", "agg_1h", "agg_1d", "dirty_windows", "dirty_rollups", "events"):
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
            if row and row[0]:
                conn.execute(f"TRUNCATE {table}")
        with started(*roles):
            # Interpreter start and kernel warm-up are not throughput: wait until every processor holds its two
            # connections (work and LISTEN), then a little longer.
            deadline = time.monotonic() + 120
            while len(backend_pids(conn, f"%{run}%")) < 2 * processes and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(warm_up_s)
            meter = CpuMeter()
            meter.add("processors", [r.pid for r in roles if r.pid])
            meter.add("PostgreSQL", backend_pids(conn, f"%{run}%"))
            with conn.transaction():
                windows = conn.execute(_DIRTY_ALL, (since,)).rowcount
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_DIRTY, str(windows)))
            query = _PAST_WORK if rollups else "SELECT count(*) FROM dirty_windows"
            drain = _watch(conn, query, 0, meter, lambda: None, timeout_s)
            if not all(role.running for role in roles):
                raise RuntimeError("a processor exited:\n" + "\n".join(r.log_tail() for r in roles))
    return drain
