"""Notification latency on loopback: from a commit to the webhook receiver, p50 and p99.

Three measurements in one run, against one PostgreSQL server, one webhook receiver (tests.support.notify, an
http.server on 127.0.0.1 with keep-alive) and real `livinglab` processes:

1. baseline: a bare httpx POST loop at the delivery rate, from the moment a POST is due to its arrival (the floor
   of HTTP on this machine);
2. delivery: a committed outbox row (one transaction per row, with NOTIFY, as the evaluator queues them) to its
   arrival through `livinglab notify`;
3. end to end: readings committed as the ingester commits them (binary COPY, dirty windows, NOTIFY) at
   `--rate` readings/s for `--duration` s, with a rule `mean_1m:pm25 > 100` on every sensor; some readings (two a
   second, each of its own quiet sensor) raise an alarm. From the commit of such a reading, through `livinglab
   process` (aggregates, the change event, the alarm evaluator, the outbox) and `livinglab notify`, to the webhook's
   arrival. Target: p99 under 2 s at 1,000 readings/s.

    python -m benchmarks.notify [--rate 1000] [--duration 60] [--delivery-rate 100] [--delivery-duration 20]

The server: LIVINGLAB_TEST_DATABASE_URL, else a PostgreSQL cluster of its own (benchmarks/_servers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from benchmarks._servers import database_server
from livinglab.alarms.rules import RuleSpec
from livinglab.alarms.store import import_rules
from livinglab.domain import QUANTITIES
from livinglab.embedded import free_port, wait_for_port
from livinglab.launch import RoleProcess, drop_database, scratch_database
from livinglab.notifications import CHANNEL_DELIVERIES, DELIVERY_HEADER
from livinglab.storage import CHANNEL_DIRTY
from livinglab.storage.copy import encode_binary_copy
from livinglab.storage.registry import upsert_sensors
from tests.support import sensors
from tests.support.notify import alarm_payload

SECRET = "benchmark-secret-0123456789abcdef"
LOAD_SENSORS = 100
THRESHOLD = 100.0


@dataclass(frozen=True)
class Arrival:
    received_at: float
    delivery_id: str
    event: str
    sensor_id: str


class Receiver:
    """benchmarks._webhook_receiver in its own process (so the benchmark's own work does not slow it down)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.path = log_dir / "arrivals.tsv"
        self.path.write_text("")
        self._offset = 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._webhook_receiver", str(self.port), str(self.path)]
        )
        wait_for_port(self.port, timeout_s=30, process=self.process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def take(self) -> list[Arrival]:
        """Arrivals since the last call (complete lines only)."""
        with self.path.open(encoding="utf-8") as f:
            f.seek(self._offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        self._offset += len(complete.encode())
        arrivals = []
        for line in complete.splitlines():
            received_at, delivery_id, event, sensor_id = line.split("\t")
            arrivals.append(Arrival(float(received_at), delivery_id, event, sensor_id))
        return arrivals

    def collect(self, count: int, timeout_s: float) -> list[Arrival]:
        """Arrivals until `count` have come (or `timeout_s` passed)."""
        arrivals: list[Arrival] = []
        deadline = time.monotonic() + timeout_s
        while True:
            arrivals += self.take()
            if len(arrivals) >= count or time.monotonic() > deadline:
                return arrivals
            time.sleep(0.2)

    def latencies(self, sent: dict[str, float], timeout_s: float) -> tuple[list[float], int]:
        """Seconds from the sending of each of `sent` (delivery id -> when it was sent) to its arrival, for those that
        arrive within `timeout_s`; and how many did not."""
        arrived = {a.delivery_id: a.received_at for a in self.collect(len(sent), timeout_s)}
        return [arrived[i] - t for i, t in sent.items() if i in arrived], len(sent.keys() - arrived.keys())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass(frozen=True)
class Figures:
    name: str
    samples: list[float]  # seconds
    note: str = ""

    def row(self) -> str:
        if not self.samples:
            return f"| {self.name} | 0 | - | - | - | {self.note} |"
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"| {self.name} | {len(ordered)} | {statistics.median(ordered) * 1000:.0f} | {p99 * 1000:.0f} |"
            f" {ordered[-1] * 1000:.0f} | {self.note} |"
        )


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# ---- 1. baseline ------------------------------------------------------------------------------------------------


async def _bare_posts(url: str, rate: float, duration_s: float) -> dict[str, float]:
    """POST at `rate` per second from 32 senders (as many as a deliverer runs at once); returns delivery id ->
    wall-clock time the POST was due."""
    due: dict[str, float] = {}
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def sender(client: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            delivery_id, body = item
            headers = {DELIVERY_HEADER: delivery_id, "Content-Type": "application/json"}
            with contextlib.suppress(httpx.HTTPError):  # a POST that failed counts as missing
                await client.post(url, content=body, headers=headers)

    # The deliverer's client limits (notify/_webhook.py): connections kept alive for every sender.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        senders = [asyncio.create_task(sender(client)) for _ in range(32)]
        start = time.monotonic()
        for n in range(int(rate * duration_s)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            delivery_id = str(uuid.uuid4())
            due[delivery_id] = time.time()
            queue.put_nowait(
                (delivery_id, json.dumps(alarm_payload("raised", n, "aq-bare", "jakarta", 101.0)).encode())
            )
        for _ in senders:
            queue.put_nowait(None)
        await asyncio.gather(*senders)
    return due


# ---- 2. delivery only -------------------------------------------------------------------------------------------


def _outbox_rows(
    url: str, channel_id: str, rate: float, duration_s: float, *, rule_id: str = "bench-outbox"
) -> dict[str, float]:
    """Commit one outbox row at a time at `rate` per second; returns delivery id -> wall-clock commit time."""
    count = max(1, int(rate * duration_s))
    with psycopg.connect(url) as conn:
        key = sensors.register(conn, [sensors.air("aq-outbox", "jakarta", "Menteng")])["aq-outbox"]
        conn.execute(
            "INSERT INTO alarm_rules (rule_id, name, metric, op, threshold, clear_threshold, severity)"
            " VALUES (%s, 'outbox', 'ispu', '>', 100, 100, 'warning')",
            (rule_id,),
        )
        alarm_ids = [
            r[0]
            for r in conn.execute(
                "INSERT INTO alarms (rule_id, sensor_key, city, district, severity, state, raised_at, value,"
                " last_value, cleared_at) SELECT %s, %s, 'jakarta', 'Menteng', 'warning', 'cleared',"
                " now(), 101, 101, now() FROM generate_series(1, %s) RETURNING alarm_id",
                (rule_id, key, count),
            ).fetchall()
        ]
        conn.commit()
        committed: dict[str, float] = {}
        start = time.monotonic()
        for n, alarm_id in enumerate(alarm_ids):
            _sleep_until(start + n / rate)
            row = conn.execute(
                "INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload)"
                " VALUES (%s, %s, 'raised', %s) RETURNING delivery_id",
                (channel_id, alarm_id, Jsonb(alarm_payload("raised", alarm_id, "aq-outbox", "jakarta", 101.0))),
            ).fetchone()
            assert row is not None
            conn.execute(f"NOTIFY {CHANNEL_DELIVERIES}")
            conn.commit()
            committed[str(row[0])] = time.time()
    return committed


# ---- 3. end to end ----------------------------------------------------------------------------------------------

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS bench_readings (sensor_key integer, quantity smallint, ts timestamptz,"
    " value float8, received_at timestamptz) ON COMMIT DELETE ROWS"
)
# The ingester's statement (ingest/writer.py): new readings, then their minutes marked dirty.
_INSERT_AND_MARK = """
WITH inserted AS (
    INSERT INTO readings (sensor_key, quantity, ts, value, received_at)
    SELECT sensor_key, quantity, ts, value, received_at FROM bench_readings ON CONFLICT DO NOTHING
    RETURNING sensor_key, quantity, ts
)
INSERT INTO dirty_windows (sensor_key, quantity, window_start)
SELECT DISTINCT sensor_key, quantity, date_trunc('minute', ts) FROM inserted ORDER BY 1, 2, 3
ON CONFLICT (sensor_key, quantity, window_start)
DO UPDATE SET version = dirty_windows.version + 1, marked_at = now()
"""
_PM25 = QUANTITIES["pm25"].code


def _write_batch(conn: psycopg.Connection[Any], keys: np.ndarray, values: np.ndarray, now_s: float) -> None:
    # Distinct timestamps per sensor within a batch: microseconds apart.
    ts_us = (np.int64(now_s * 1e6) + np.arange(keys.size, dtype=np.int64)).astype(np.int64)
    codes = np.full(keys.size, _PM25, dtype=np.int16)
    with conn.cursor().copy(
        "COPY bench_readings (sensor_key, quantity, ts, value, received_at) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(
            encode_binary_copy(
                [
                    ("int4", keys.astype(np.int32)),
                    ("int2", codes),
                    ("timestamptz", ts_us),
                    ("float8", values.astype(np.float64)),
                    ("timestamptz", ts_us),
                ]
            )
        )
    conn.execute(_INSERT_AND_MARK)
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_DIRTY, str(keys.size)))
    conn.commit()


def _prepare_city(url: str, channel_id: str, duration_s: float) -> tuple[dict[str, int], list[str], list[str]]:
    """Load sensors, quiet sensors (one spike each) and the rule; returns (keys by sensor id, load ids, spike ids)."""
    triggers = int(duration_s * 2)
    load_specs = [sensors.air(f"aq-load-{n:03d}", "jakarta", "Menteng") for n in range(LOAD_SENSORS)]
    trigger_specs = [sensors.air(f"aq-spike-{n:03d}", "jakarta", "Gambir") for n in range(triggers)]
    with psycopg.connect(url) as conn:
        upsert_sensors(conn, [*load_specs, *trigger_specs])
        keys = dict(conn.execute("SELECT sensor_id, sensor_key FROM sensors").fetchall())
        rule = {"rule_id": "pm25-high", "name": "PM2.5 above 100", "metric": "mean_1m:pm25", "op": ">"}
        spec = RuleSpec.model_validate(
            {**rule, "threshold": THRESHOLD, "severity": "warning", "channels": [channel_id]}
        )
        import_rules(conn, [spec])
        conn.commit()
    return keys, [s.sensor_id for s in load_specs], [s.sensor_id for s in trigger_specs]


def _evaluated_up_to_date(url: str) -> bool:
    """Whether the alarm evaluator has gone through every change event so far (and there is one)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT cursor FROM alarm_evaluator) >= max(id) FROM events WHERE type = 'aggregates'"
        ).fetchone()
    return bool(row and row[0])


def _end_to_end(
    url: str, keys: dict[str, int], load: list[str], spikes: list[str], rate: float, duration_s: float
) -> tuple[dict[str, float], float]:
    """Readings at `rate`/s; returns (sensor id of each alarm-raising reading -> its commit time, readings/s
    achieved)."""
    with psycopg.connect(url) as conn:
        conn.execute(_STAGE)
        conn.commit()
        load_keys = np.array([keys[s] for s in load], dtype=np.int32)
        batches_per_s = 10
        per_batch = int(rate / batches_per_s)
        spike_at = {int(n * batches_per_s / 2): sensor_id for n, sensor_id in enumerate(spikes)}
        committed: dict[str, float] = {}
        written = 0
        start = time.monotonic()
        for batch in range(int(duration_s * batches_per_s)):
            _sleep_until(start + batch / batches_per_s)
            batch_keys = load_keys[(np.arange(per_batch) + batch * per_batch) % len(load_keys)]
            values = np.full(per_batch, 30.0)
            spike = spike_at.get(batch)
            if spike is not None:  # one reading of the batch is the spike of a quiet sensor
                batch_keys = batch_keys.copy()
                batch_keys[-1] = keys[spike]
                values[-1] = 150.0
            _write_batch(conn, batch_keys, values, time.time())
            written += per_batch
            if spike is not None:
                committed[spike] = time.time()
        elapsed = time.monotonic() - start
    return committed, written / elapsed


# ---- the run ----------------------------------------------------------------------------------------------------


@contextmanager
def _role(role: str, settings: dict[str, str], log_dir: Path) -> Iterator[RoleProcess]:
    process = RoleProcess(role, settings, log_dir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="readings per second, end to end (1000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of readings, end to end (60)")
    parser.add_argument("--delivery-rate", type=float, default=100.0, help="outbox rows per second (100)")
    parser.add_argument("--delivery-duration", type=float, default=20.0, help="seconds of outbox rows (20)")
    args = parser.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="livinglab-bench-notify-"))
    figures: list[Figures] = []
    with database_server() as server:
        name, url = scratch_database(server, "llb_notify")
        receiver = Receiver(log_dir)
        try:
            with psycopg.connect(url) as conn:
                channel_id = "bench-hook"
                conn.execute(
                    "INSERT INTO notification_channels (channel_id, type, name, config) VALUES (%s, 'webhook', %s, %s)",
                    (channel_id, channel_id, Jsonb({"url": receiver.url, "secret": SECRET})),
                )
                conn.commit()

            due = asyncio.run(_bare_posts(receiver.url, args.delivery_rate, args.delivery_duration))
            samples, _ = receiver.latencies(due, 30)
            figures.append(Figures("bare httpx POST (baseline)", samples, f"{args.delivery_rate:g}/s"))

            settings = {"LIVINGLAB_DATABASE_URL": url, "LIVINGLAB_LOG_LEVEL": "WARNING"}
            with _role("notify", settings, log_dir):
                # Warm-up: the deliverer is up and listening once a first row has gone through.
                _outbox_rows(url, channel_id, 10, 0.1, rule_id="bench-warm-up")
                receiver.collect(1, 60)
                committed = _outbox_rows(url, channel_id, args.delivery_rate, args.delivery_duration)
                samples, missing = receiver.latencies(committed, 60)
                figures.append(
                    Figures("outbox commit -> webhook", samples, f"{args.delivery_rate:g}/s, {missing} missing")
                )

                keys, load, spike_ids = _prepare_city(url, channel_id, args.duration)
                with _role("process", settings, log_dir) as processor:
                    # Warm-up: kernels compiled, a first round processed and evaluated.
                    _end_to_end(url, keys, load, [], args.rate, 2.0)
                    deadline = time.monotonic() + 120
                    while not _evaluated_up_to_date(url) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    spikes, achieved = _end_to_end(url, keys, load, spike_ids, args.rate, args.duration)
                    raised: dict[str, float] = {}
                    deadline = time.monotonic() + 60
                    while len(raised.keys() & spikes.keys()) < len(spikes) and time.monotonic() < deadline:
                        for arrival in receiver.collect(1, 1):
                            if arrival.event == "raised":
                                raised.setdefault(arrival.sensor_id, arrival.received_at)
                    samples = [raised[s] - t for s, t in spikes.items() if s in raised]
                    missing = len(spikes) - len(samples)
                    figures.append(
                        Figures(
                            "reading commit -> webhook (end to end)",
                            samples,
                            f"{achieved:.0f} readings/s, {missing} missing",
                        )
                    )
                    if missing:
                        print(processor.log_tail())
        finally:
            receiver.stop()
            drop_database(server, name)

    print("\n| path | samples | p50 ms | p99 ms | max ms | load |")
    print("|---|---|---|---|---|---|")
    for figure in figures:
        print(figure.row())
    print(f"\nlogs: {log_dir}")


if __name__ == "__main__":
    main()
