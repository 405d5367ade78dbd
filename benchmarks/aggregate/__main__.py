"""`python -m benchmarks.aggregate`: 1-minute count/mean/min/max/p95 over 10 million readings (1,000 sensors at
about 1 Hz) by the numba kernels, pandas `groupby`, polars `group_by` and polars `group_by_dynamic`, each on one
thread, on the same data in the same order, with the results checked equal; a memory-bandwidth pass (NumPy sums
over the same arrays) as the ceiling; then the processor end to end against PostgreSQL beside a read-only pass.

The database server is LIVINGLAB_TEST_DATABASE_URL (like the tests), else an embedded one; the scratch database is
dropped at the end. `--skip-database` runs the in-memory part only.
"""

from __future__ import annotations

import os

os.environ["POLARS_MAX_THREADS"] = "1"  # before polars is imported anywhere

import argparse
import platform

import numba
import numpy as np

from benchmarks._servers import database_server
from benchmarks.aggregate._endtoend import run_end_to_end
from benchmarks.aggregate._peers import (
    best_of_rounds,
    check_equal,
    make_readings,
    polars_threads,
    run_numba,
    run_numpy_sum,
    run_pandas,
    run_polars_dynamic,
    run_polars_group_by,
)
from processing import warm_up


def _rate(rows: int, seconds: float) -> str:
    rate = rows / seconds
    return f"{rate / 1e6:,.1f} M" if rate >= 1e6 else f"{rate / 1e3:,.0f} k"


def bench_kernels(sensors: int, per_sensor: int, repeat: int) -> None:
    import pandas as pd
    import polars as pl

    readings = make_readings(sensors, per_sensor)
    n = readings.rows
    print(f"\n## 1-minute count/mean/min/max/p95 over {n:,} readings ({sensors:,} sensors, ~1 Hz), one thread each")
    print(
        f"numba {numba.__version__}, pandas {pd.__version__}, polars {pl.__version__} "
        f"(POLARS_MAX_THREADS={polars_threads()}), numpy {np.__version__}; rows sorted by (sensor, time) for all, "
        f"minute derived from the timestamp inside each timed run; best of {repeat} interleaved rounds"
    )
    warm_up()
    timings = best_of_rounds(
        repeat,
        {
            "sum": lambda: run_numpy_sum(readings),
            "numba": lambda: run_numba(readings),
            "numba p50+p95": lambda: run_numba(readings, (0.5, 0.95)),
            "pandas groupby": lambda: run_pandas(readings),
            "polars group_by": lambda: run_polars_group_by(readings),
            "polars group_by_dynamic": lambda: run_polars_dynamic(readings),
        },
    )
    t_sum = timings.pop("sum")[0]
    t_numba, reference = timings.pop("numba")
    t_numba_both = timings.pop("numba p50+p95")[0]
    results = timings
    assert reference is not None
    for name, (_, table) in results.items():
        check_equal(reference, table, name)  # type: ignore[arg-type]
    windows = reference.count.size  # type: ignore[attr-defined]
    print(f"{windows:,} windows; every method's windows, counts, min and max equal, means and p95 within 1e-12")
    print("| method | seconds | rows/s | numba is ... x faster | fraction of the memory pass |")
    print("|---|---:|---:|---:|---:|")
    print(f"| NumPy sum over the same arrays (memory pass) | {t_sum:.3f} | {_rate(n, t_sum)} | | 1.00 |")
    print(f"| **numba kernels** | {t_numba:.3f} | {_rate(n, t_numba)} | 1.0 | {t_sum / t_numba:.2f} |")
    for name, (seconds, _) in results.items():
        print(f"| {name} | {seconds:.3f} | {_rate(n, seconds)} | {seconds / t_numba:.1f} | {t_sum / seconds:.2f} |")
    print(
        f"| numba kernels with p50 too (what the processor stores) | {t_numba_both:.3f} | {_rate(n, t_numba_both)} |"
        f" | {t_sum / t_numba_both:.2f} |"
    )
    fastest_polars = min(results["polars group_by"][0], results["polars group_by_dynamic"][0])
    print(
        f"\nnumba vs pandas: {results['pandas groupby'][0] / t_numba:.1f}x (target >= 5x); vs the faster polars "
        f"method: {fastest_polars / t_numba:.1f}x (target >= 1.5x); memory pass: "
        f"{readings.nbytes / t_sum / 1e9:.1f} GB/s over {readings.nbytes / 1e6:,.0f} MB"
    )


def bench_end_to_end(sensors: int, seconds: int) -> None:
    with database_server() as server:
        r = run_end_to_end(server, sensors=sensors, seconds=seconds)
    print(
        f"\n## Processor end to end: {r.readings:,} readings ({sensors:,} sensors at 1 Hz for {seconds:,} s) in "
        f"PostgreSQL, {r.windows:,} dirty minutes"
    )
    print("| pass | seconds | readings/s | vs read only |")
    print("|---|---:|---:|---:|")
    print(
        f"| read only (the processor's read query, same batches) | {r.read_s:.2f} | {_rate(r.readings, r.read_s)} "
        f"| 1.00 |"
    )
    print(
        f"| minutes: claim, read, kernels, upsert agg_1m, queue rollups, events, release | {r.minutes_s:.2f} | "
        f"{_rate(r.readings, r.minutes_s)} | {r.read_s / r.minutes_s:.2f} |"
    )
    total = r.minutes_s + r.rollups_s
    print(
        f"| + hours and days from raw readings, ISPU/AQI, completeness, service levels ({r.rollup_windows:,} "
        f"windows) | {total:.2f} | {_rate(r.readings, total)} | {r.read_s / total:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--per-sensor", type=int, default=10_000, help="readings per sensor in memory (~1 Hz)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db-seconds", type=int, default=1800, help="seconds of 1 Hz readings per sensor in SQL")
    parser.add_argument("--skip-database", action="store_true")
    args = parser.parse_args()
    print(f"# benchmarks.aggregate on {platform.node()} ({os.cpu_count()} CPUs), Python {platform.python_version()}")
    bench_kernels(args.sensors, args.per_sensor, args.repeat)
    if not args.skip_database:
        bench_end_to_end(args.sensors, args.db_seconds)


if __name__ == "__main__":
    main()
