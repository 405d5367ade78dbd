"""Messages as devices send them: topics and payloads (CONTRACT.md section 1), and what each should do.

A `Message` carries its bytes and, for the ledger, either the readings it should store (canonical units, the way
the ingester converts them) or the reason it should be rejected with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from livinglab.domain import QUANTITIES, RejectionReason

#: (quantity, ts in seconds, value in the reported unit, unit or None for the canonical unit)
Record = tuple[str, float, float, str | None]


@dataclass(frozen=True, slots=True)
class Reading:
    """A reading the platform should store: canonical value at a timestamp in integer microseconds."""

    quantity: str
    ts_us: int
    value: float


@dataclass(slots=True)
class Message:
    """One MQTT message of the plan."""

    #: Simulated time at which it is due (real time and accelerated modes wait for it).
    publish_at: float
    #: Deterministic tie-break among messages due at the same time.
    order: tuple[int, ...]
    topic: str
    payload: bytes
    #: `air`, `traffic`, or `other` for a topic that names no valid kind.
    kind: str
    sensor_id: str | None
    #: What a well-formed message should store (empty for a malformed one).
    readings: tuple[Reading, ...] = ()
    #: The rejection reason the simulator built the message to trigger (None: it should be accepted).
    reason: RejectionReason | None = None
    #: Faults this message is or carries (`duplicate`, `late`, `clock_skew`, ...); empty for a plain message.
    faults: tuple[FaultNote, ...] = ()
    #: A LoRaWAN uplink of a registered device: its frame counter (None for everything else).
    fcnt: int | None = None
    #: Members of a LoRaWAN uplink's codec output that map to no quantity (the platform ignores and counts them).
    ignored: int = 0

    def sort_key(self) -> tuple[float, tuple[int, ...]]:
        return (self.publish_at, self.order)


@dataclass(frozen=True, slots=True)
class FaultNote:
    """One injected fault. Faults over a span of readings (outage, burst, clock skew) note `detail` on the first."""

    type: str
    detail: str = ""


@dataclass(slots=True)
class Omission:
    """A reading time at which the device sent nothing (a gap or an outage): nothing to publish, a fault to count."""

    publish_at: float
    order: tuple[int, ...]
    sensor_id: str
    ts_s: float
    fault: FaultNote

    def sort_key(self) -> tuple[float, tuple[int, ...]]:
        return (self.publish_at, self.order)


#: What a plan yields, in publishing order.
PlanItem = Message | Omission


def topic_for(prefix: str, city: str, kind: str, sensor_id: str) -> str:
    return f"{prefix}/{city}/{kind}/{sensor_id}"


def format_value(value: float, unit: str | None, quantity: str) -> float | int:
    """Counts as integers, everything else as the shortest float that round-trips."""
    known = QUANTITIES.get(quantity)
    if known is not None and known.is_count and float(value).is_integer():
        return int(value)
    return float(value)


def senml_records(sensor_id: str, records: Sequence[Record]) -> list[dict[str, Any]]:
    """A SenML pack with a base name and base time (the first record's), times relative to it."""
    base_time = int(min(r[1] for r in records))
    pack: list[dict[str, Any]] = [{"bn": f"urn:dev:livinglab:{sensor_id}:", "bt": base_time}]
    for quantity, ts, value, unit in records:
        record: dict[str, Any] = {"n": quantity}
        if unit is not None:
            record["u"] = unit
        record["v"] = format_value(value, unit, quantity)
        offset = ts - base_time
        if offset:
            record["t"] = int(offset) if float(offset).is_integer() else offset
        pack.append(record)
    return pack


def senml_payload(sensor_id: str, records: Sequence[Record]) -> bytes:
    return json.dumps(senml_records(sensor_id, records), separators=(",", ":")).encode()


def iso_time(ts: float, offset_h: float) -> str:
    """ISO 8601 with the local UTC offset, as a device clock set to local time writes it."""
    zone = UTC if offset_h == 0 else timezone(timedelta(hours=offset_h))
    return datetime.fromtimestamp(ts, tz=zone).isoformat()


def simple_objects(records: Sequence[Record], offset_h: float) -> list[dict[str, Any]]:
    """Simple JSON objects, one per timestamp, quantities as keys (canonical units only)."""
    by_ts: dict[float, dict[str, Any]] = {}
    for quantity, ts, value, unit in records:
        if unit is not None:
            raise ValueError("simple JSON carries canonical units only")
        by_ts.setdefault(ts, {"ts": iso_time(ts, offset_h)})[quantity] = format_value(value, unit, quantity)
    return list(by_ts.values())


def simple_payload(records: Sequence[Record], offset_h: float) -> bytes:
    objects = simple_objects(records, offset_h)
    document: Any = objects[0] if len(objects) == 1 else objects
    return json.dumps(document, separators=(",", ":")).encode()


def canonical_readings(records: Iterable[Record]) -> tuple[Reading, ...]:
    """The readings the ingester should store for these records: canonical units, microsecond timestamps."""
    out = []
    for quantity, ts, value, unit in records:
        q = QUANTITIES[quantity]
        canonical = q.units[unit].to_canonical(value) if unit is not None else float(value)
        out.append(Reading(quantity, round(ts * 1_000_000), canonical))
    return tuple(out)
