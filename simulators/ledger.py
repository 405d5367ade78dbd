"""The ledger: what was sent, which faults were injected, and what the platform should store and reject.

Messages are recorded in the order they were published. A well-formed message is judged the way CONTRACT.md
section 1 says the platform judges it: each reading is keyed by (sensor, quantity, ts); a key already stored with
the same value is a duplicate (nothing new stored), with a different value it rejects the whole message as
`conflicting_duplicate` and the first value stays. A malformed message is expected to be rejected with the reason
the simulator built it for. The ledger never decodes payloads: what a message should do is known from its plan.

LoRaWAN uplinks (CONTRACT.md section 6) are judged the same way, and two more things are counted per sensor, as
docs/devices.md says the platform counts them: codec members that map to no quantity (of uplinks not rejected), and
frames missed by the device's frame counter, in publishing order: a counter above the highest one seen misses the
frames in between; one below it starts a new session when it is small (below 16) or far behind (more than 16384),
else it is a late or repeated uplink and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from livinglab.domain import RejectionReason
from simulators.messages import Message, Omission, PlanItem


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault, for the fault log."""

    type: str
    sensor_id: str | None
    ts_s: float | None
    detail: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Series:
    """The stored readings of one sensor and quantity, sorted by time."""

    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]


class Ledger:
    """Accounts for every published message. `keep_readings=False` keeps counts only (for long load runs)."""

    def __init__(self, *, keep_readings: bool = True, keep_log: bool = True) -> None:
        self.keep_readings = keep_readings
        self.keep_log = keep_log
        self.messages = 0
        self.bytes = 0
        self.by_kind: Counter[str] = Counter()
        self.readings_sent = 0
        self.readings_stored = 0
        self.duplicates = 0
        self.faults: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.log: list[FaultRecord] = []
        #: Messages whose planned outcome differs from the contract's (a planning bug if ever above 0).
        self.surprises = 0
        self.first_ts_s: float | None = None
        self.last_ts_s: float | None = None
        self._stored: dict[tuple[str, str], dict[int, float]] = {}
        #: Per LoRaWAN sensor: uplinks, frame-counter gaps, frames missed, codec members ignored.
        self.lorawan: dict[str, list[int]] = {}
        self._fcnt: dict[str, int] = {}

    def record(self, item: PlanItem) -> None:
        """Account for one published message, or one omitted reading."""
        if isinstance(item, Omission):
            self._note(item.fault.type, item.sensor_id, item.ts_s, item.fault.detail, None)
            return
        self.messages += 1
        self.bytes += len(item.payload)
        self.by_kind[item.kind] += 1
        ts = item.readings[0].ts_us / 1e6 if item.readings else None
        for note in item.faults:
            reason = item.reason.value if item.reason is not None else None
            self._note(note.type, item.sensor_id, ts, note.detail, reason)
        if item.fcnt is not None and item.sensor_id is not None:
            self._frame(item.sensor_id, item.fcnt)
        if item.readings and item.sensor_id is not None:
            if self._judge(item) and item.ignored:
                self.lorawan[item.sensor_id][3] += item.ignored
        elif item.reason is not None:
            self.rejections[item.reason.value] += 1
        else:
            self.surprises += 1

    def _frame(self, sensor_id: str, fcnt: int) -> None:
        counts = self.lorawan.setdefault(sensor_id, [0, 0, 0, 0])
        counts[0] += 1
        last = self._fcnt.get(sensor_id)
        if last is None or fcnt > last:
            if last is not None and fcnt > last + 1:
                counts[1] += 1
                counts[2] += fcnt - last - 1
            self._fcnt[sensor_id] = fcnt
        elif fcnt < last and (fcnt < 16 or last - fcnt > 16384):
            self._fcnt[sensor_id] = fcnt  # a new session of the device

    def _note(self, kind: str, sensor_id: str | None, ts: float | None, detail: str, reason: str | None) -> None:
        self.faults[kind] += 1
        if self.keep_log:
            self.log.append(FaultRecord(kind, sensor_id, ts, detail, reason))

    def _judge(self, message: Message) -> bool:
        """Account for a well-formed message; False when it is rejected."""
        assert message.sensor_id is not None
        self.readings_sent += len(message.readings)
        if not self.keep_readings:
            return self._judge_by_plan(message)
        fresh: dict[tuple[str, str, int], float] = {}
        duplicates = 0
        conflict = False
        for reading in message.readings:
            series = self._stored.get((message.sensor_id, reading.quantity))
            key = (message.sensor_id, reading.quantity, reading.ts_us)
            seen = fresh.get(key)
            if seen is None and series is not None:
                seen = series.get(reading.ts_us)
            if seen is None:
                fresh[key] = reading.value
            elif seen == reading.value:
                duplicates += 1
            else:
                conflict = True
                break
        expected = RejectionReason.CONFLICTING_DUPLICATE if conflict else None
        if expected is not message.reason:
            self.surprises += 1
        if conflict:
            self.rejections[RejectionReason.CONFLICTING_DUPLICATE.value] += 1
            return False
        self.duplicates += duplicates
        for (sensor_id, quantity, ts_us), value in fresh.items():
            self._stored.setdefault((sensor_id, quantity), {})[ts_us] = value
            self._track_time(ts_us)
        self.readings_stored += len(fresh)
        return True

    def _judge_by_plan(self, message: Message) -> bool:
        if message.reason is not None:
            self.rejections[message.reason.value] += 1
            return False
        if any(note.type == "duplicate" for note in message.faults):
            self.duplicates += len(message.readings)
        else:
            self.readings_stored += len(message.readings)
            self._track_time(message.readings[0].ts_us)
        return True

    def _track_time(self, ts_us: int) -> None:
        ts = ts_us / 1e6
        self.first_ts_s = ts if self.first_ts_s is None else min(self.first_ts_s, ts)
        self.last_ts_s = ts if self.last_ts_s is None else max(self.last_ts_s, ts)

    # -- results ----------------------------------------------------------------------------------------------

    def series(self) -> dict[tuple[str, str], Series]:
        """Stored readings per (sensor_id, quantity), sorted by time."""
        if not self.keep_readings:
            raise ValueError("this ledger kept counts only")
        out: dict[tuple[str, str], Series] = {}
        for key, readings in self._stored.items():
            ts = np.fromiter(readings.keys(), dtype=np.int64, count=len(readings))
            values = np.fromiter(readings.values(), dtype=np.float64, count=len(readings))
            order = np.argsort(ts, kind="stable")
            out[key] = Series(ts[order], values[order])
        return out

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    def summary(self) -> dict[str, Any]:
        """Counts for the end-of-run summary and `summary.json`."""

        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "messages_by_kind": dict(sorted(self.by_kind.items())),
            "readings_sent": self.readings_sent,
            "readings_stored": self.readings_stored,
            "duplicates": self.duplicates,
            "faults": dict(sorted(self.faults.items())),
            "expected_rejections": dict(sorted(self.rejections.items())),
            "expected_rejected_messages": self.rejected,
            "first_reading": iso(self.first_ts_s),
            "last_reading": iso(self.last_ts_s),
            "planning_surprises": self.surprises,
            "lorawan": {
                name: sum(counts[i] for counts in self.lorawan.values())
                for i, name in enumerate(("uplinks", "fcnt_gaps", "frames_missed", "ignored_members"))
            },
        }

    def merge(self, other: Ledger) -> None:
        """Add another ledger's counts (publisher processes each keep one). Readings must not overlap."""
        self.messages += other.messages
        self.bytes += other.bytes
        self.by_kind.update(other.by_kind)
        self.readings_sent += other.readings_sent
        self.readings_stored += other.readings_stored
        self.duplicates += other.duplicates
        self.faults.update(other.faults)
        self.rejections.update(other.rejections)
        self.log.extend(other.log)
        self.surprises += other.surprises
        for ts in (other.first_ts_s, other.last_ts_s):
            if ts is not None:
                self._track_time(round(ts * 1e6))
        for key, readings in other._stored.items():
            self._stored.setdefault(key, {}).update(readings)
        for sensor_id, counts in other.lorawan.items():  # publisher processes take disjoint sensors
            self.lorawan[sensor_id] = list(counts)
            self._fcnt[sensor_id] = other._fcnt[sensor_id]
