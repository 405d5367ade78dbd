"""Readings of many messages, column-wise, and the numeric checks that run on whole columns at once.

The decoder appends one row per reading as it walks a payload (plain list appends: cheap per reading); `check_rows`
then converts units, checks physical ranges and timestamps for every row of a batch with NumPy, and names each
failing message by the first failed check in contract order (out_of_range, timestamp_in_future,
timestamp_too_old), so one message costs the same whether it arrives alone or among thousands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from ingest.outcome import Rejection
from livinglab.domain import QUANTITIES, QUANTITIES_BY_CODE, RejectionReason

_TABLE_SIZE = max(QUANTITIES_BY_CODE) + 1
#: Times above this many seconds (year 5138) are almost certainly milliseconds or microseconds.
_MILLISECONDS_HINT_S = 1e11


@dataclass(frozen=True, slots=True)
class Limits:
    """What the ingester accepts (defaults per CONTRACT.md section 1; `ranges` override per-quantity ranges)."""

    max_payload_bytes: int = 256 * 1024
    max_records: int = 10_000
    max_clock_skew_s: float = 120.0
    max_lateness_s: float = 7 * 86400.0
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    low_by_code: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)
    high_by_code: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.ranges) - set(QUANTITIES)
        if unknown:
            raise ValueError(f"ranges given for unknown quantities: {', '.join(sorted(unknown))}")
        low = np.full(_TABLE_SIZE, np.nan)
        high = np.full(_TABLE_SIZE, np.nan)
        for quantity in QUANTITIES.values():
            low[quantity.code], high[quantity.code] = self.ranges.get(
                quantity.name, (quantity.min_value, quantity.max_value)
            )
        object.__setattr__(self, "low_by_code", low)
        object.__setattr__(self, "high_by_code", high)


@dataclass(slots=True)
class RowBuffer:
    """Rows appended by the decoder: message index, quantity code, unit scale and offset, raw value, time (s)."""

    msg: list[int] = field(default_factory=list)
    code: list[int] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    offset: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.code)

    def truncate(self, length: int) -> None:
        """Drop rows appended after `length` (a message that turned out bad)."""
        for column in (self.msg, self.code, self.scale, self.offset, self.value, self.ts):
            del column[length:]


@dataclass(frozen=True, slots=True)
class Rows:
    """Checked rows in canonical units: message index, quantity code, time (microseconds since the epoch), value."""

    msg: npt.NDArray[np.int32]
    quantity: npt.NDArray[np.int16]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.quantity.size)

    def take(self, keep: npt.NDArray[np.bool_]) -> Rows:
        return Rows(self.msg[keep], self.quantity[keep], self.ts_us[keep], self.value[keep])

    @classmethod
    def empty(cls) -> Rows:
        return cls(np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int64), np.empty(0, np.float64))


def format_time(ts_s: float) -> str:
    """ISO 8601 UTC for a time in seconds, or the plain number when no calendar date can hold it."""
    if math.isfinite(ts_s) and -62135596800.0 <= ts_s < 253402300800.0:
        return datetime.fromtimestamp(ts_s, tz=UTC).isoformat().replace("+00:00", "Z")
    return f"{ts_s:.6g} s"


def check_rows(
    rows: RowBuffer, received_at_s: npt.NDArray[np.float64], limits: Limits
) -> tuple[Rows, dict[int, Rejection]]:
    """Convert units and check ranges and times; rows of failing messages are dropped.

    `received_at_s[i]` is when message `i` arrived. Returns the surviving rows and a rejection per failing message.
    """
    if not rows.code:
        return Rows.empty(), {}
    msg = np.asarray(rows.msg, dtype=np.int32)
    code = np.asarray(rows.code, dtype=np.int16)
    ts = np.asarray(rows.ts, dtype=np.float64)
    received = received_at_s[msg]
    with np.errstate(all="ignore"):
        value = np.asarray(rows.value, dtype=np.float64) * np.asarray(rows.scale) + np.asarray(rows.offset)
        in_range = (value >= limits.low_by_code[code]) & (value <= limits.high_by_code[code])
        future = ts > received + limits.max_clock_skew_s
        too_old = ts < received - limits.max_lateness_s
    bad = ~in_range | future | too_old
    rejections: dict[int, Rejection] = {}
    keep: npt.NDArray[np.bool_] | None = None
    if bad.any():
        ranks: dict[int, tuple[int, Rejection]] = {}
        for i in np.flatnonzero(bad).tolist():
            rank = 0 if not in_range[i] else 1 if future[i] else 2
            m = int(msg[i])
            if m not in ranks or rank < ranks[m][0]:
                ranks[m] = (rank, _reject_row(rank, int(code[i]), float(value[i]), float(ts[i]), received[i], limits))
        rejections = {m: rejection for m, (_, rejection) in ranks.items()}
        keep = ~np.isin(msg, np.fromiter(rejections, dtype=np.int32, count=len(rejections)))
    ts_us = np.rint(ts * 1e6).astype(np.int64) if keep is None else np.rint(ts[keep] * 1e6).astype(np.int64)
    if keep is None:
        return Rows(msg, code, ts_us, value), rejections
    return Rows(msg[keep], code[keep], ts_us, value[keep]), rejections


def _reject_row(rank: int, code: int, value: float, ts: float, received: float, limits: Limits) -> Rejection:
    quantity = QUANTITIES_BY_CODE[code]
    if rank == 0:
        low, high = limits.low_by_code[code], limits.high_by_code[code]
        return Rejection(
            RejectionReason.OUT_OF_RANGE,
            f"{quantity.name}={value:g} {quantity.unit} outside [{low:g}, {high:g}]",
        )
    if rank == 1:
        hint = " (milliseconds? times are Unix seconds)" if ts > _MILLISECONDS_HINT_S else ""
        return Rejection(
            RejectionReason.TIMESTAMP_IN_FUTURE,
            f"{quantity.name} at {format_time(ts)} is {ts - received:.6g} s ahead of the ingester's clock"
            f" (limit {limits.max_clock_skew_s:g} s){hint}",
        )
    return Rejection(
        RejectionReason.TIMESTAMP_TOO_OLD,
        f"{quantity.name} at {format_time(ts)} is {received - ts:.6g} s old (limit {limits.max_lateness_s:g} s)",
    )
