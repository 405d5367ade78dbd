"""The same 1-minute aggregates (count, mean, min, max, p95) by the numba kernels, pandas and polars, on one data set.

Every method gets the rows already sorted by (sensor, time), as the processor reads them, and derives the minute
from the timestamp itself, so sorting is counted for none of them and key derivation for all. Each runs on one
thread (polars with POLARS_MAX_THREADS=1, set before polars is imported). Times are the best of `repeat` runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.aggregates import window_stats

MINUTE_US = 60_000_000


@dataclass(frozen=True, slots=True)
class Readings:
    """Rows sorted by (sensor, ts): int64 sensor ids, int64 microseconds since the Unix epoch, float64 values."""

    sensor: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]

    @property
    def rows(self) -> int:
        return int(self.value.size)

    @property
    def nbytes(self) -> int:
        return int(self.sensor.nbytes + self.ts_us.nbytes + self.value.nbytes)


def make_readings(sensors: int, per_sensor: int, *, seed: int = 7) -> Readings:
    """About 1 Hz per sensor (1 s apart with up to 0.4 s of jitter), PM2.5-like values with ties (0.1 resolution)."""
    rng = np.random.default_rng(seed)
    start_us = 1_795_852_800_000_000  # 2026-11-28 00:00 UTC
    step = np.arange(per_sensor, dtype=np.int64) * 1_000_000
    jitter = rng.integers(0, 400_000, size=(sensors, per_sensor), dtype=np.int64)
    ts = (start_us + step[None, :] + jitter).ravel()
    sensor = np.repeat(np.arange(sensors, dtype=np.int64), per_sensor)
    value = np.round(rng.gamma(4.0, 10.0, sensors * per_sensor), 1)
    return Readings(sensor, ts, value)


@dataclass(frozen=True, slots=True)
class Table:
    """Aggregates per (sensor, minute) in the numba kernels' order."""

    sensor: npt.NDArray[np.int64]
    minute_us: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    p95: npt.NDArray[np.float64]


def run_numba(r: Readings, quantiles: tuple[float, ...] = (0.95,)) -> Table:
    w = window_stats(r.sensor, r.ts_us, r.value, 60, quantiles=quantiles)
    s = w.stats
    return Table(w.series, w.window_start_us, s.count, s.mean, s.min, s.max, s.quantiles[0.95])


def run_pandas(r: Readings) -> Table:
    import pandas as pd

    frame = pd.DataFrame({"sensor": r.sensor, "ts": r.ts_us, "value": r.value})
    minute = frame["ts"] // MINUTE_US * MINUTE_US
    groups = frame.groupby([frame["sensor"], minute], sort=False)["value"]
    stats = groups.agg(["count", "mean", "min", "max"])
    p95 = groups.quantile(0.95)
    keys = stats.index
    return Table(
        keys.get_level_values(0).to_numpy(np.int64),
        keys.get_level_values(1).to_numpy(np.int64),
        stats["count"].to_numpy(np.int64),
        stats["mean"].to_numpy(),
        stats["min"].to_numpy(),
        stats["max"].to_numpy(),
        p95.to_numpy(),
    )


def _polars_table(df: object) -> Table:
    import polars as pl

    assert isinstance(df, pl.DataFrame)
    return Table(
        df["sensor"].to_numpy().astype(np.int64),
        df["minute"].cast(pl.Int64).to_numpy(),
        df["count"].to_numpy().astype(np.int64),
        df["mean"].to_numpy(),
        df["min"].to_numpy(),
        df["max"].to_numpy(),
        df["p95"].to_numpy(),
    )


def _polars_aggregations() -> list[object]:
    import polars as pl

    v = pl.col("value")
    return [
        pl.len().alias("count"),
        v.mean().alias("mean"),
        v.min().alias("min"),
        v.max().alias("max"),
        v.quantile(0.95, interpolation="linear").alias("p95"),
    ]


def run_polars_group_by(r: Readings) -> Table:
    import polars as pl

    df = pl.DataFrame({"sensor": r.sensor, "ts": r.ts_us, "value": r.value})
    minute = (pl.col("ts") // MINUTE_US * MINUTE_US).alias("minute")
    out = df.group_by([pl.col("sensor"), minute], maintain_order=True).agg(*_polars_aggregations())
    return _polars_table(out)


def run_polars_dynamic(r: Readings) -> Table:
    import polars as pl

    df = pl.DataFrame({"sensor": r.sensor, "ts": pl.Series(r.ts_us).cast(pl.Datetime("us")), "value": r.value})
    out = df.group_by_dynamic("ts", every="1m", group_by="sensor").agg(*_polars_aggregations())
    return _polars_table(out.rename({"ts": "minute"}))


def run_numpy_sum(r: Readings) -> float:
    """The memory-bandwidth baseline: one pass reading every input array once."""
    return float(r.sensor.sum() + r.ts_us.sum() + r.value.sum())


def best_of_rounds(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, tuple[float, object]]:
    """Each method's best time over `repeat` rounds; every round runs every method once, in turn, so a noisy
    neighbour on a shared machine slows all methods alike rather than the one that happened to run then."""
    best = {name: (float("inf"), None) for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - started
            if elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


def check_equal(reference: Table, other: Table, name: str) -> None:
    """Same windows in the same order, same counts/min/max, means and p95 within 1e-12 relative."""
    for field in ("sensor", "minute_us", "count", "min", "max"):
        if not np.array_equal(getattr(reference, field), getattr(other, field)):
            raise AssertionError(f"{name}: {field} differs from the numba kernels")
    for field in ("mean", "p95"):
        if not np.allclose(getattr(reference, field), getattr(other, field), rtol=1e-12, atol=0.0):
            worst = np.max(np.abs(getattr(reference, field) - getattr(other, field)))
            raise AssertionError(f"{name}: {field} differs from the numba kernels by up to {worst}")


def polars_threads() -> str:
    return os.environ.get("POLARS_MAX_THREADS", "unset")
