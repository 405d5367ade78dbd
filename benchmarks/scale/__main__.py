"""`python -m benchmarks.scale`: one versus two processes per role, and growth from 1 to 50 million readings.

Prints, from one run on this machine:
1. ingest: the rate at which one, then two, ingester processes on one shared subscription drain the same backlog
   queued on Mosquitto (single-reading messages and 100-reading SenML packs), and the ratio;
2. processing: the rate at which one, then two, processor processes compute the same queued 1-minute windows;
3. size: aggregation time of the same recent hour and query latencies as the readings table grows (binary COPY),
   on plain PostgreSQL and, when a TimescaleDB installation is found (`livinglab.launch.find_bindir`), on TimescaleDB.

The database server is LIVINGLAB_TEST_DATABASE_URL (like the tests), else an embedded one. Everything runs on
loopback; scratch databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks._servers import configured_bindir, database_server
from benchmarks.scale._load import copy_readings, register_sensors
from benchmarks.scale._roles import ingest_drain, process_drain
from benchmarks.scale._size import AGGREGATION_TIMEOUT_S, QUERIES, SizePoint, grow
from livinglab.embedded import MosquittoBroker
from livinglab.launch import PostgresCluster, drop_database, find_bindir, scratch_database
from livinglab.settings import TimescaleMode


def _ratio(one: float, two: float) -> str:
    return f"{two / one:.2f}x"


def bench_ingest(server: str, log_dir: Path, quick: bool) -> None:
    print("\n## Ingest: backlog queued on Mosquitto, drained by N ingester processes on one shared subscription")
    print("| messages | processes | readings | seconds | readings/s | vs 1 process | cores busy during the drain |")
    print("|---|---:|---:|---:|---:|---:|---|")
    shapes = [(1, 20_000 if quick else 60_000), (100, 2_000 if quick else 6_000)]
    broker = MosquittoBroker(Path(tempfile.mkdtemp(prefix="livinglab-bench-mqtt-")))
    broker.start()
    try:
        for per_message, messages in shapes:
            label = "1 reading" if per_message == 1 else f"SenML pack of {per_message}"
            rates = []
            for processes in (1, 2):
                drain, _publish_rate = ingest_drain(
                    server, broker, processes=processes, per_message=per_message, messages=messages, log_dir=log_dir
                )
                rates.append(drain.rate)
                vs = "1.00x" if processes == 1 else _ratio(rates[0], drain.rate)
                print(
                    f"| {label} | {processes} | {drain.items} | {drain.seconds:.2f} | {drain.rate:,.0f} | {vs} |"
                    f" {drain.cpu.summary(drain.seconds)} |",
                    flush=True,
                )
    finally:
        broker.stop()


def bench_process(server: str, log_dir: Path, quick: bool) -> None:
    print("\n## Processing: the same queued 1-minute windows computed by N processor processes")
    print("| processes | windows | seconds | windows/s | readings/s | vs 1 process | cores busy during the drain |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    name, url = scratch_database(server, "bench_process")
    try:
        sensors, minutes, interval_s = 100, (60 if quick else 240), 10
        register_sensors(url, sensors, interval_s=interval_s)
        end_s = int(datetime.now(UTC).timestamp()) // 60 * 60
        with psycopg.connect(url, autocommit=True) as conn:
            readings = copy_readings(conn, sensors, end_s=end_s, minutes=minutes, interval_s=interval_s)
            conn.execute("VACUUM ANALYZE readings")
        since = datetime.fromtimestamp(end_s, UTC) - timedelta(minutes=minutes)
        rates = []
        for processes in (1, 2):
            drain = process_drain(url, processes=processes, since=since, log_dir=log_dir)
            rates.append(drain.rate)
            per_window = readings / (sensors * 5 * minutes)
            vs = "1.00x" if processes == 1 else _ratio(rates[0], drain.rate)
            print(
                f"| {processes} | {drain.items} | {drain.seconds:.2f} | {drain.rate:,.0f} |"
                f" {drain.rate * per_window:,.0f} | {vs} | {drain.cpu.summary(drain.seconds)} |",
                flush=True,
            )
    finally:
        drop_database(server, name)


def _seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else f"> {AGGREGATION_TIMEOUT_S:.0f}"


def _print_size(label: str, points: Iterator[SizePoint], compared: str | None) -> None:
    print(f"\n## Size ({label}): the same recent hour aggregated, the same queries, on a growing readings table")
    names = list(QUERIES)
    header = " | ".join(f"{n} p50/p95 ms" for n in names)
    before = f"recent hour: aggregation s, {compared} | " if compared else ""
    print(f"| readings | table size | load + index s | {before}recent hour: aggregation s | {header} |")
    print("|---:|---:|---:|---:|" + "---:|" * (len(names) + bool(compared)), flush=True)
    measured = []
    for p in points:
        cells = " | ".join(f"{p.query_ms[n][0]:.2f} / {p.query_ms[n][1]:.2f}" for n in names)
        before = f"{_seconds(p.compared_s)} | " if compared else ""
        print(
            f"| {p.readings:,} | {p.table_bytes / 2**30:.2f} GiB | {p.load_s:.0f} | {before}{_seconds(p.aggregate_s)} |"
            f" {cells} |",
            flush=True,
        )
        measured.append(p)
    if len(measured) > 1:
        first, last = measured[0], measured[-1]
        growth = last.readings / first.readings

        def ratio(a: float | None, b: float | None) -> str:
            return f"{b / a:.2f}x the time" if a and b else "did not finish in time"

        aggregation = f"aggregation {ratio(first.aggregate_s, last.aggregate_s)}"
        if compared:
            aggregation += f" ({compared}: {ratio(first.compared_s, last.compared_s)})"
        queries = ", ".join(f"{n} {last.query_ms[n][0] / first.query_ms[n][0]:.2f}x" for n in names)
        print(f"\n{growth:.0f}x the readings: {aggregation}; query p50: {queries}")


def bench_size(
    server: str, mode: TimescaleMode, label: str, sizes: list[int], log_dir: Path, compare_tree: Path | None
) -> None:
    name, url = scratch_database(server, "bench_size", mode)
    try:
        compared = f"processor of {compare_tree}" if compare_tree else None
        _print_size(label, grow(url, sizes, log_dir, compare_tree=compare_tree), compared)
    finally:
        drop_database(server, name)


def bench_sizes(
    shared_server: str, sizes: list[int], log_dir: Path, storages: set[str], compare_tree: Path | None
) -> None:
    """Plain PostgreSQL and TimescaleDB side by side on one private server with the same settings, when TimescaleDB
    is installed; else plain PostgreSQL on the shared server."""
    bindir, reason = find_bindir(configured_bindir(), timescaledb=True)
    if bindir is None:
        bench_size(shared_server, TimescaleMode.OFF, "plain PostgreSQL", sizes, log_dir, compare_tree)
        print(f"\n## Size (TimescaleDB): skipped, {reason}")
        return
    # Durable like a production server; a larger WAL so the bulk loads are not one checkpoint after another.
    server = PostgresCluster(bindir, timescaledb=True, durable=True, settings={"max_wal_size": "4GB"})
    try:
        url = server.start()
        if "plain" in storages:
            bench_size(url, TimescaleMode.OFF, "plain PostgreSQL", sizes, log_dir, compare_tree)
        if "timescaledb" in storages:
            label = "TimescaleDB, chunks older than a day compressed"
            bench_size(url, TimescaleMode.REQUIRE, label, sizes, log_dir, compare_tree)
    finally:
        server.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads, sizes 1M and 5M (a smoke run)")
    parser.add_argument("--sizes", default="1000000,10000000,50000000", help="readings at each size step")
    parser.add_argument("--only", choices=["ingest", "process", "size"], action="append", help="run only these parts")
    parser.add_argument(
        "--storage", choices=["plain", "timescaledb"], action="append", help="size part: only these storages"
    )
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="size part: aggregate the recent hour with the processor of this checkout too (before/after, same run)",
    )
    args = parser.parse_args(argv)
    sizes = [1_000_000, 5_000_000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    parts = set(args.only or ["ingest", "process", "size"])
    log_dir = Path(tempfile.mkdtemp(prefix="livinglab-bench-logs-"))
    print(f"# Scale benchmark ({os.cpu_count()} cores; role logs in {log_dir})")
    with database_server() as server:
        steps: list[Callable[[], None]] = []
        if "ingest" in parts:
            steps.append(lambda: bench_ingest(server, log_dir, args.quick))
        if "process" in parts:
            steps.append(lambda: bench_process(server, log_dir, args.quick))
        if "size" in parts:
            storages = set(args.storage or ["plain", "timescaledb"])
            steps.append(lambda: bench_sizes(server, sizes, log_dir, storages, args.compare_tree))
        for step in steps:
            step()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
