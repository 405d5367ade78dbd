"""Deterministic randomness: every random draw is a pure function of (seed, sensor stream, purpose, time).

Two tools. `block_rng` gives a NumPy generator for one sensor-day and one purpose, so a day's readings do not depend
on which days or sensors were simulated before (a backfill followed by real time, or one of several publisher
processes, produces the same values as one long run). `smooth_noise` is counter-based (SplitMix64 over integer
knots), so slowly varying weather and sensor behaviour stay continuous across day boundaries.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


class Purpose(enum.IntEnum):
    """Independent random streams of one sensor-day."""

    VALUES = 1
    FAULTS = 2
    INCIDENTS = 3
    STATION = 4
    CITY = 5
    MALFORMED = 6
    LORAWAN = 7


def block_rng(seed: int, stream: int, day: int, purpose: Purpose) -> np.random.Generator:
    """The generator of one sensor (`stream`), one UTC day and one purpose."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stream & 0xFFFFFFFF, day & 0xFFFFFFFF, int(purpose)])


def station_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of a sensor's fixed traits (its calibration, its share of the city's level)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stream & 0xFFFFFFFF, int(Purpose.STATION)])


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return z ^ (z >> np.uint64(31))


def _uniform(seed: int, stream: int, salt: int, index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    key = ((seed & 0xFFFFFFFF) << 32) | (stream & 0xFFFFFFFF)
    salted = np.uint64(key ^ ((salt * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF))
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.full(index.shape, salted, dtype=np.uint64))
        mixed = _splitmix64(mixed ^ index.astype(np.uint64))
    # 53 random bits -> (0, 1), never exactly 0 so the logarithm below is finite.
    return ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def knot_normals(seed: int, stream: int, salt: int, index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Standard normal draws, one per integer `index`, the same whenever the same index is asked for."""
    u1 = _uniform(seed, stream, 2 * salt, index)
    u2 = _uniform(seed, stream, 2 * salt + 1, index)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def smooth_noise(
    seed: int, stream: int, salt: int, ts_s: npt.NDArray[np.float64], spacing_s: float
) -> npt.NDArray[np.float64]:
    """Slowly varying standard-normal-ish noise: normal knots every `spacing_s`, linear in between."""
    if ts_s.size == 0:
        return np.zeros(0)
    first = int(np.floor(ts_s.min() / spacing_s))
    last = int(np.floor(ts_s.max() / spacing_s)) + 1
    knots = np.arange(first, last + 1, dtype=np.int64)
    values = knot_normals(seed, stream, salt, knots)
    return np.interp(ts_s / spacing_s, knots.astype(np.float64), values)
