"""Open interfaces against baselines of the same run: the CSV export beside `psql \\copy`, and SensorThings
Observations pages beside `/v1/sensors/{id}/readings` pages.

    python -m benchmarks.open_interfaces [--readings 10000000] [--duration-s 10] [--database-url URL]

What it does, in one run:
1. creates a scratch database (plain PostgreSQL) on the server of `--database-url` (default:
   LIVINGLAB_TEST_DATABASE_URL, else the local server), and loads `--readings` readings of 10 air stations (one
   quantity each, a reading every 10 s), building the primary key after the load;
2. starts `livinglab api` in its own process (one uvicorn worker);
3. CSV export of every reading: `GET /v1/export/readings` streamed by a client that counts the bytes, beside
   `psql -c "\\copy (SELECT ...) TO STDOUT CSV"` of the same rows in the same order (the same SELECT the one-query
   way: joined and ordered by sensor_id, quantity and ts), and beside the same without ORDER BY (a bare scan, the
   fastest psql can go). Rows/s of each, the ratio, and the API process's peak RSS growth (sampled every 20 ms
   over the export) over its RSS before. The files are checked to hold the same rows.
4. pages of 100 Observations of one Datastream (`/sta/v1.1/Datastreams('<id>')/Observations?$top=100`, following
   `@iot.nextLink`) beside pages of 100 of `/v1/sensors/{id}/readings` (following `next_cursor`) of the same
   sensor and quantity: each walk starts at the first reading and keeps going (deep pages cost what the first
   costs); `--clients` concurrent walkers for the most pages/s, in alternating rounds; then both paced at half the
   STA rate, with p50/p99 latency. The load generator is asyncio + httpx in this process, the same for both.

Targets: export >= 0.5x the rate of the ordered psql baseline with peak RSS growth < 100 MiB; STA pages >= 0.5x the
rate of /v1 pages, p99 < 100 ms at half rate.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil
import psycopg

from benchmarks.api import start_server
from livinglab.launch import create_database, drop_database, unique_name
from livinglab.storage import migrate
from livinglab.storage.keys import Scope, create_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENSORS = 10
STEP_S = 10
PAGE = 100

_SELECT = (
    "SELECT s.sensor_id, q.name, livinglab_iso(r.ts), r.value FROM readings r"
    " JOIN sensors s ON s.sensor_key = r.sensor_key JOIN quantities q ON q.code = r.quantity"
)


def load(url: str, readings: int) -> None:
    per_sensor = readings // SENSORS
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(SENSORS):
            conn.execute(
                "INSERT INTO sensors (sensor_id, city, district, kind, name, lat, lon, interval_s)"
                " VALUES (%s, 'jakarta', 'Menteng', 'air', %s, -6.2, 106.8, %s)",
                (f"bench-{i:02d}", f"bench station {i}", STEP_S),
            )
        conn.execute("ALTER TABLE readings DROP CONSTRAINT readings_pkey")
        conn.execute(
            "INSERT INTO readings (sensor_key, quantity, ts, value, received_at)"
            " SELECT s.sensor_key, 1, %(t0)s + make_interval(secs => g * %(step)s),"
            " round((10 + 40 * random())::numeric, 2)::float8, %(t0)s"
            " FROM sensors s CROSS JOIN generate_series(0, %(n)s - 1) g",
            {"t0": T0, "step": STEP_S, "n": per_sensor},
        )
        conn.execute("ALTER TABLE readings ADD PRIMARY KEY (sensor_key, quantity, ts)")
        conn.execute("VACUUM ANALYZE readings")


# ---- export -------------------------------------------------------------------------------------------------------


class RssSampler:
    """Peak RSS of a process, sampled every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / 2**20


@dataclass
class Export:
    label: str
    rows: int
    seconds: float
    digest: str | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _digest_lines(data: bytes, digest: Any) -> int:
    digest.update(data.replace(b"\r", b""))  # CRLF and LF files compare alike (no field holds a CR)
    return data.count(b"\n")


def psql_export(url: str, query: str, label: str) -> Export:
    started = time.perf_counter()
    process = subprocess.Popen(
        ["psql", "-X", "-q", url, "-c", f"\\copy ({query}) TO STDOUT CSV"], stdout=subprocess.PIPE
    )
    digest = hashlib.sha256()
    rows = 0
    assert process.stdout is not None
    while chunk := process.stdout.read(1 << 20):
        rows += _digest_lines(chunk, digest)
    if process.wait() != 0:
        raise RuntimeError("psql failed")
    return Export(label, rows, time.perf_counter() - started, digest.hexdigest())


def api_export(base: str, key: str, end: datetime) -> tuple[Export, float]:
    digest = hashlib.sha256()
    rows = -1  # the header
    first = True
    params = {"start": T0.isoformat(), "end": end.isoformat()}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    with httpx.stream("GET", f"{base}/v1/export/readings", params=params, headers=headers, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            if first:  # the header line is not part of the psql output
                chunk = chunk[chunk.index(b"\n") + 1 :]
                rows += 1
                first = False
            rows += _digest_lines(chunk, digest)
    return Export("GET /v1/export/readings (CSV)", rows, time.perf_counter() - started, digest.hexdigest()), 0.0


# ---- pages --------------------------------------------------------------------------------------------------------


@dataclass
class PageRun:
    pages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.pages / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Walker:
    """Walks one list page by page, from its first page, starting over at its end."""

    def __init__(self, kind: str, base: str, sensor: str, end: datetime) -> None:
        self.kind, self.base, self.sensor, self.end = kind, base, sensor, end
        self.next: str | None = None

    def first(self) -> str:
        if self.kind == "sta":
            return f"{self.base}/sta/v1.1/Datastreams('{self.sensor}:pm25')/Observations?$top={PAGE}"
        start, end = T0.isoformat().replace("+00:00", "Z"), self.end.isoformat().replace("+00:00", "Z")
        return f"{self.base}/v1/sensors/{self.sensor}/readings?quantity=pm25&start={start}&end={end}&limit={PAGE}"

    async def step(self, client: httpx.AsyncClient) -> float:
        url = self.next or self.first()
        started = time.perf_counter()
        response = await client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        body = response.json()
        if self.kind == "sta":
            assert len(body["value"]) == PAGE or "@iot.nextLink" not in body
            self.next = body.get("@iot.nextLink")
        else:
            assert len(body["items"]) == PAGE or body["next_cursor"] is None
            cursor = body["next_cursor"]
            self.next = f"{self.first()}&cursor={cursor}" if cursor else None
        return elapsed


async def closed_loop(
    kind: str, base: str, key: str, sensor: str, end: datetime, clients: int, seconds: float
) -> PageRun:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def run(walker: Walker) -> None:
            while time.perf_counter() < stop:
                latencies.append(await walker.step(client))

        started = time.perf_counter()
        await asyncio.gather(*(run(Walker(kind, base, sensor, end)) for _ in range(clients)))
        return PageRun(len(latencies), time.perf_counter() - started, latencies)


async def paced(kind: str, base: str, key: str, sensor: str, end: datetime, rate: float, seconds: float) -> PageRun:
    """About `rate` pages/s, sent on a schedule whatever the answers' latency (open loop), by walkers that each
    have at most one page in flight."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    walkers = [Walker(kind, base, sensor, end) for _ in range(64)]
    idle: asyncio.Queue[Walker] = asyncio.Queue()
    for walker in walkers:
        idle.put_nowait(walker)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one() -> None:
            walker = await idle.get()
            try:
                latencies.append(await walker.step(client))
            finally:
                idle.put_nowait(walker)

        tasks = []
        started = time.perf_counter()
        count = int(rate * seconds)
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        return PageRun(len(latencies), time.perf_counter() - started, latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LIVINGLAB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--readings", type=int, default=10_000_000, help="readings to load (default 10 M)")
    parser.add_argument("--duration-s", type=float, default=10.0, help="seconds per page measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent page walkers for the most pages/s")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of the page measurements")
    parser.add_argument("--no-export", action="store_true", help="measure the pages only")
    args = parser.parse_args(argv)

    name = unique_name("llbench_oi")
    url = create_database(args.database_url, name)
    server = None
    try:
        migrate(url)
        started = time.perf_counter()
        load(url, args.readings)
        with psycopg.connect(url) as conn:
            total = int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])  # type: ignore[index]
            key = create_key(conn, Scope.READ, name="bench")
            conn.commit()
        print(f"loaded {total:,} readings of {SENSORS} sensors in {time.perf_counter() - started:.1f} s", flush=True)
        end = T0 + timedelta(seconds=STEP_S * (total // SENSORS))
        # /v1 readings may span the whole load (its default cap is 31 days), so both walks read the same rows.
        server, base = start_server(
            url, {"LIVINGLAB_STATEMENT_TIMEOUT_MS": "60000", "LIVINGLAB_MAX_READINGS_RANGE_DAYS": "400"}
        )
        if not args.no_export:
            export_figures(url, base, key, total, end, server.pid)
        page_figures(base, key, total, end, args)
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop_database(args.database_url, name)
    return 0


def export_figures(url: str, base: str, key: str, total: int, end: datetime, pid: int) -> None:

    ordered = f"{_SELECT} ORDER BY s.sensor_id, q.name, r.ts"
    baseline = psql_export(url, ordered, "psql \\copy (SELECT ... ORDER BY sensor_id, quantity, ts) CSV")
    scan = psql_export(url, _SELECT, "psql \\copy (SELECT ...) CSV, no ORDER BY")
    with RssSampler(pid) as rss:
        exported, _ = api_export(base, key, end)
    baseline_again = psql_export(url, ordered, "psql \\copy ordered, again after the API")
    same = exported.digest == baseline.digest and exported.rows == total
    print(f"\nCSV export of {total:,} readings (same rows as psql: {'yes' if same else 'NO'})")
    print(f"| {'what':<62} | {'rows/s':>11} | {'seconds':>7} | {'vs ordered psql':>15} |")
    print(f"|{'-' * 64}|{'-' * 13}|{'-' * 9}|{'-' * 17}|")
    psql_rate = statistics.mean([baseline.rate, baseline_again.rate])
    for run in (baseline, baseline_again, scan, exported):
        print(f"| {run.label:<62} | {run.rate:>11,.0f} | {run.seconds:>7.1f} | {run.rate / psql_rate:>14.2f}x |")
    print(
        f"API process RSS: {rss.before / 2**20:.0f} MiB before, peak {rss.peak / 2**20:.0f} MiB, "
        f"growth {rss.growth_mib:.1f} MiB (target < 100 MiB); export / ordered psql (mean of both) "
        f"{exported.rate / psql_rate:.2f}x (target >= 0.5x)",
        flush=True,
    )


def page_figures(base: str, key: str, total: int, end: datetime, args: argparse.Namespace) -> None:
    sensor = "bench-00"
    runs: dict[str, list[PageRun]] = {"sta": [], "v1": []}
    for round_ in range(args.rounds):
        order = ("sta", "v1") if round_ % 2 == 0 else ("v1", "sta")
        for kind in order:
            runs[kind].append(asyncio.run(closed_loop(kind, base, key, sensor, end, args.clients, args.duration_s / 2)))
    rate = {kind: statistics.median(r.rate for r in rs) for kind, rs in runs.items()}
    half = rate["sta"] / 2
    paced_runs = {kind: asyncio.run(paced(kind, base, key, sensor, end, half, args.duration_s)) for kind in runs}
    print(f"\nPages of {PAGE} of one Datastream ({total // SENSORS:,} readings) from a {total:,}-reading table")
    print(f"| {'route':<58} | {'pages/s':>8} | {'ratio':>6} | {'paced/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 8}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    labels = {
        "v1": "GET /v1/sensors/{id}/readings?limit=100 (next_cursor)",
        "sta": "GET /sta/v1.1/Datastreams(id)/Observations?$top=100",
    }
    for kind in ("v1", "sta"):
        p = paced_runs[kind]
        print(
            f"| {labels[kind]:<58} | {rate[kind]:>8.0f} | {rate[kind] / rate['v1']:>6.2f} | {p.rate:>8.0f} |"
            f" {p.percentile(0.5):>7.1f} | {p.percentile(0.99):>7.1f} |"
        )
    print(
        f"STA / v1 page rate {rate['sta'] / rate['v1']:.2f}x (target >= 0.5x); STA p99 at half rate "
        f"{paced_runs['sta'].percentile(0.99):.1f} ms (target < 100 ms); rounds: "
        + ", ".join(f"{k} {[round(r.rate) for r in rs]}" for k, rs in runs.items())
    )


if __name__ == "__main__":
    sys.exit(main())
