"""Payload decoding and validation: bytes in, columnar readings or a rejection out. Never raises on input.

The two payload forms and the reason codes are fixed by CONTRACT.md section 1. Checks run in the contract's order
and the first failure names the message; one bad record rejects the whole message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from livinglab.domain import QUANTITIES, Kind, Quantity, RejectionReason

#: SenML times below this are relative to the time of receipt (RFC 8428 section 4.5.3).
SENML_RELATIVE_LIMIT_S = 2**28
_SENML_FIELDS = frozenset({"bn", "bt", "bu", "bver", "n", "u", "v", "s", "t"})
_MAX_INT_DIGITS = 40


@dataclass(frozen=True, slots=True)
class Limits:
    """Configurable acceptance limits (defaults per CONTRACT.md)."""

    max_payload_bytes: int = 256 * 1024
    max_records: int = 10_000
    max_clock_skew_s: float = 120.0
    max_lateness_s: float = 7 * 86400.0
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {q.name: (q.min_value, q.max_value) for q in QUANTITIES.values()}
    )


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectionReason
    detail: str


@dataclass(frozen=True, slots=True)
class Readings:
    """Decoded readings of one message, as parallel arrays. `ts_us`: microseconds since the Unix epoch, UTC."""

    quantity: npt.NDArray[np.int16]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.quantity.size)


class _Reject(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, reason: RejectionReason, detail: str) -> None:
        self.rejection = Rejection(reason, detail)


def _reject_constant(token: str) -> Any:
    raise _Reject(RejectionReason.NON_FINITE_VALUE, f"non-finite number {token}")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(RejectionReason.DUPLICATE_KEY, f"member {_safe(key)!r} repeated in one object")
            seen.add(key)
    return obj


def _parse_int(text: str) -> int | float:
    # Python refuses to parse integers of thousands of digits; a value that long is out of any range anyway.
    return int(text) if len(text) <= _MAX_INT_DIGITS else float("inf") if text[0] != "-" else float("-inf")


def _safe(text: str, limit: int = 80) -> str:
    """Text taken from a payload, made safe to store and print (no NUL, no lone surrogates)."""
    cleaned = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return cleaned + ("..." if len(text) > limit else "")


def _number(raw: Any, what: str) -> float:
    """A reading value: a JSON number or a numeric string."""
    if isinstance(raw, bool):
        raise _Reject(RejectionReason.INVALID_SHAPE, f"{what}: a boolean is not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip().lower().lstrip("+-")
        if text in ("nan", "inf", "infinity"):
            raise _Reject(RejectionReason.NON_FINITE_VALUE, f"{what}: non-finite value {_safe(raw)!r}")
        try:
            return float(raw)
        except ValueError:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"{what}: {_safe(raw)!r} is not a number") from None
    raise _Reject(RejectionReason.INVALID_SHAPE, f"{what}: expected a number")


def _parse_ts(raw: Any) -> float:
    """Simple-JSON `ts`: ISO 8601 with an offset, or Unix seconds. Returns Unix seconds."""
    if isinstance(raw, bool):
        raise _Reject(RejectionReason.INVALID_SHAPE, "ts must be ISO 8601 with an offset or Unix seconds")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise _Reject(RejectionReason.INVALID_SHAPE, "ts is not a finite number")
        return float(raw)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"ts {_safe(raw)!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"ts {_safe(raw)!r} has no UTC offset")
        return parsed.timestamp()
    raise _Reject(RejectionReason.INVALID_SHAPE, "ts must be ISO 8601 with an offset or Unix seconds")


class _Collector:
    def __init__(self, kind: Kind, received_at_s: float, limits: Limits) -> None:
        self.kind = kind
        self.received_at_s = received_at_s
        self.limits = limits
        self.quantity: list[int] = []
        self.ts: list[float] = []
        self.value: list[float] = []

    def add(self, name: str, unit: str | None, value: float, ts: float) -> None:
        quantity = _resolve_quantity(name, self.kind)
        if unit is not None:
            converter = quantity.units.get(unit)
            if converter is None:
                raise _Reject(RejectionReason.BAD_UNIT, f"{quantity.name}: unit {_safe(unit)!r} is not accepted")
            value = converter.to_canonical(value)
        if not math.isfinite(value):
            raise _Reject(RejectionReason.OUT_OF_RANGE, f"{quantity.name}: value does not fit a float")
        low, high = self.limits.ranges.get(quantity.name, (quantity.min_value, quantity.max_value))
        if not low <= value <= high:
            raise _Reject(RejectionReason.OUT_OF_RANGE, f"{quantity.name}={value:g} outside [{low:g}, {high:g}]")
        if not math.isfinite(ts):
            raise _Reject(RejectionReason.INVALID_SHAPE, "time is not a finite number")
        if ts > self.received_at_s + self.limits.max_clock_skew_s:
            raise _Reject(
                RejectionReason.TIMESTAMP_IN_FUTURE,
                f"{quantity.name} at {ts:.0f} is {ts - self.received_at_s:.0f} s ahead of the ingester's clock",
            )
        if ts < self.received_at_s - self.limits.max_lateness_s:
            raise _Reject(
                RejectionReason.TIMESTAMP_TOO_OLD,
                f"{quantity.name} at {ts:.0f} is older than {self.limits.max_lateness_s:.0f} s",
            )
        if len(self.quantity) >= self.limits.max_records:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"more than {self.limits.max_records} readings")
        self.quantity.append(quantity.code)
        self.ts.append(ts)
        self.value.append(value)

    def readings(self) -> Readings:
        ts = np.asarray(self.ts, dtype=np.float64)
        return Readings(
            np.asarray(self.quantity, dtype=np.int16),
            np.round(ts * 1e6).astype(np.int64),
            np.asarray(self.value, dtype=np.float64),
        )


def _resolve_quantity(name: str, kind: Kind) -> Quantity:
    quantity = QUANTITIES.get(name)
    if quantity is None:
        raise _Reject(RejectionReason.UNKNOWN_QUANTITY, f"unknown quantity {_safe(name)!r}")
    if quantity.kind is not kind:
        raise _Reject(RejectionReason.KIND_MISMATCH, f"{name} is a {quantity.kind.value} quantity, not {kind.value}")
    return quantity


def _decode_senml(records: list[Any], out: _Collector) -> None:
    base_name, base_time, base_unit = "", 0.0, None
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _Reject(RejectionReason.INVALID_SHAPE, f"SenML record {index} is not an object")
        unknown = set(record) - _SENML_FIELDS
        if unknown:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"unsupported SenML field {_safe(sorted(unknown)[0])!r}")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise _Reject(RejectionReason.INVALID_SHAPE, "bn must be a string")
            base_name = record["bn"]
        if "bt" in record:
            base_time = _number(record["bt"], "bt")
        if "bu" in record:
            if not isinstance(record["bu"], str):
                raise _Reject(RejectionReason.INVALID_SHAPE, "bu must be a string")
            base_unit = record["bu"]
        has_value = "v" in record or "s" in record
        if not has_value:
            if "n" in record or "u" in record or "t" in record:
                raise _Reject(RejectionReason.INVALID_SHAPE, f"SenML record {index} has no value (v or s)")
            continue  # a record of base fields only
        name = record.get("n", "")
        if not isinstance(name, str):
            raise _Reject(RejectionReason.INVALID_SHAPE, "n must be a string")
        full = base_name + name
        quantity_name = full.rsplit(":", 1)[-1]
        unit = record.get("u", base_unit)
        if unit is not None and not isinstance(unit, str):
            raise _Reject(RejectionReason.INVALID_SHAPE, "u must be a string")
        value = _number(record["v"] if "v" in record else record["s"], quantity_name or "value")
        ts = base_time + (_number(record["t"], "t") if "t" in record else 0.0)
        if ts < SENML_RELATIVE_LIMIT_S:
            ts += out.received_at_s
        out.add(quantity_name, unit, value, ts)


def _decode_simple(objects: list[Any], out: _Collector) -> None:
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise _Reject(RejectionReason.INVALID_SHAPE, f"item {index} is not an object")
        if "ts" not in obj:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"item {index} has no ts")
        ts = _parse_ts(obj["ts"])
        values = [(k, v) for k, v in obj.items() if k != "ts"]
        if not values:
            raise _Reject(RejectionReason.INVALID_SHAPE, f"item {index} has no quantities")
        for name, raw in values:
            out.add(name, None, _number(raw, _safe(name)), ts)


def _is_senml(items: list[Any]) -> bool:
    return any(isinstance(i, dict) and "ts" not in i and (set(i) & _SENML_FIELDS) for i in items)


def decode_payload(payload: bytes, *, kind: Kind, received_at_s: float, limits: Limits) -> Readings | Rejection:
    """Decode and validate one message's payload."""
    try:
        if len(payload) > limits.max_payload_bytes:
            return Rejection(
                RejectionReason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > limit {limits.max_payload_bytes}"
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(RejectionReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
        try:
            document = json.loads(text, object_pairs_hook=_pairs, parse_constant=_reject_constant, parse_int=_parse_int)
        except _Reject:
            raise
        except RecursionError:
            return Rejection(RejectionReason.INVALID_JSON, "nesting deeper than the parser allows")
        except (ValueError, TypeError) as exc:
            return Rejection(RejectionReason.INVALID_JSON, _safe(str(exc), 200))
        items = document if isinstance(document, list) else [document]
        if not items or not isinstance(document, list | dict):
            raise _Reject(RejectionReason.INVALID_SHAPE, "expected a SenML pack or a JSON object or array")
        collector = _Collector(kind, received_at_s, limits)
        if _is_senml(items):
            _decode_senml(items, collector)
        else:
            _decode_simple(items, collector)
        if not collector.quantity:
            raise _Reject(RejectionReason.INVALID_SHAPE, "no readings in the message")
        return collector.readings()
    except _Reject as rejected:
        return rejected.rejection
    except RecursionError:
        return Rejection(RejectionReason.INVALID_JSON, "nesting deeper than the parser allows")
