"""Payload decoding and validation: bytes in, rows or a rejection out. Never raises on input.

The two payload forms and the reason codes are fixed by CONTRACT.md section 1. Checks run in the contract's order
and the first failure names the message: size, UTF-8, non-finite numbers, JSON syntax, duplicate member names,
shape; then, over all records, unknown quantity, kind mismatch, unit; then (in `ingest.rows`, on whole columns)
range and time. One bad record rejects the whole message. Edge cases are decided in docs/devices.md.

Duplicate member names: orjson keeps the last one silently. Every member name is followed by exactly one `:`
outside strings, so when a payload has no backslash escapes, its count of `:` bytes equals the number of members
plus the colons inside the strings the walk saw if and only if no name repeats. When that count does not match
(or the payload has escapes, or an odd shape), the payload is re-scanned exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np

from ingest._json import Document, find_duplicate_key, load_json
from ingest.outcome import Rejection, quoted, safe_text
from ingest.rows import Limits, RowBuffer, Rows, check_rows
from livinglab.domain import QUANTITIES, Kind, RejectionReason

#: SenML times below this are relative to the time of receipt (RFC 8428 section 4.5.3).
SENML_RELATIVE_LIMIT_S = 2**28
SENML_FIELDS = frozenset({"bn", "bt", "bu", "bver", "n", "u", "v", "s", "t"})

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
_INF = float("inf")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}

# Per-record vocabulary checks, ranked in contract order.
_UNKNOWN_QUANTITY, _KIND_MISMATCH, _BAD_UNIT = 1, 2, 3
_VOCABULARY_REASONS = {
    _UNKNOWN_QUANTITY: RejectionReason.UNKNOWN_QUANTITY,
    _KIND_MISMATCH: RejectionReason.KIND_MISMATCH,
    _BAD_UNIT: RejectionReason.BAD_UNIT,
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a number")


class _Walk:
    """One message's walk over its parsed document, appending rows and noting the first failure of each kind."""

    __slots__ = (
        "colons",
        "keys",
        "kind",
        "limits",
        "msg",
        "non_finite",
        "readings",
        "received_at_s",
        "rows",
        "shape",
        "vocabulary",
    )

    def __init__(self, kind: Kind, received_at_s: float, msg: int, rows: RowBuffer, limits: Limits) -> None:
        self.kind = kind
        self.received_at_s = received_at_s
        self.msg = msg
        self.rows = rows
        self.limits = limits
        self.non_finite: str | None = None
        self.shape: str | None = None
        self.vocabulary: tuple[int, str] | None = None
        self.readings = 0
        self.keys = 0  # members of every object walked
        self.colons = 0  # ':' inside every string walked

    def bad_shape(self, detail: str) -> None:
        if self.shape is None:
            self.shape = detail

    def bad_word(self, rank: int, detail: str) -> None:
        if self.vocabulary is None or rank < self.vocabulary[0]:
            self.vocabulary = (rank, detail)

    def string(self, raw: Any, what: str) -> str | None:
        if type(raw) is str:
            if ":" in raw:
                self.colons += raw.count(":")
            return raw
        self.bad_shape(f"{what} must be a string, not {_json_type(raw)}")
        return None

    def number(self, raw: Any, what: str) -> float | None:
        """A JSON number, or a string holding one in JSON syntax."""
        kind = type(raw)
        if kind is float:
            return raw  # type: ignore[no-any-return]
        if kind is int:
            try:
                return float(raw)
            except OverflowError:
                return _INF if raw > 0 else -_INF
        if kind is str:
            if _NUMBER.fullmatch(raw):
                return float(raw)
            if _NON_FINITE.fullmatch(raw):
                if self.non_finite is None:
                    self.non_finite = f"{what}: non-finite value {raw!r}"
                return None
            self.bad_shape(f"{what}: {quoted(raw)} is not a number")
            return None
        self.bad_shape(f"{what} must be a number, not {_json_type(raw)}")
        return None

    def timestamp(self, raw: Any, what: str) -> float | None:
        """Simple JSON `ts`: ISO 8601 with a UTC offset, or Unix seconds."""
        if type(raw) is str and not _NUMBER.fullmatch(raw) and not _NON_FINITE.fullmatch(raw):
            self.colons += raw.count(":")
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                self.bad_shape(f"{what}: {quoted(raw)} is not an ISO 8601 time")
                return None
            if parsed.tzinfo is None:
                self.bad_shape(f"{what}: {quoted(raw)} has no UTC offset")
                return None
            return parsed.timestamp()
        return self.number(raw, what)

    def add(self, name: str, unit: str | None, value: float, ts: float, where: str) -> None:
        if self.readings >= self.limits.max_records:
            self.bad_shape(f"more than {self.limits.max_records} readings in one message")
            return
        quantity = QUANTITIES.get(name)
        if quantity is None:
            self.bad_word(_UNKNOWN_QUANTITY, f"{where}: unknown quantity {quoted(name)}")
            return
        if quantity.kind is not self.kind:
            self.bad_word(
                _KIND_MISMATCH, f"{where}: {name} is a {quantity.kind.value} quantity, the sensor is {self.kind.value}"
            )
            return
        scale, offset = 1.0, 0.0
        if unit is not None:
            converter = quantity.units.get(unit)
            if converter is None:
                self.bad_word(
                    _BAD_UNIT,
                    f"{where}: unit {quoted(unit)} is not accepted for {name} (accepted: {', '.join(quantity.units)})",
                )
                return
            scale, offset = converter.scale, converter.offset
        if ts != ts:  # NaN: only from adding opposite infinities
            self.bad_shape(f"{where}: time is not a number")
            return
        rows = self.rows
        rows.msg.append(self.msg)
        rows.code.append(quantity.code)
        rows.scale.append(scale)
        rows.offset.append(offset)
        rows.value.append(value)
        rows.ts.append(ts)
        self.readings += 1

    def objects(self, items: list[Any], label: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(where, object) for each item that is a JSON object; other items are shape errors."""
        for index, item in enumerate(items):
            where = f"{label} {index}"
            if type(item) is not dict:
                self.bad_shape(f"{where} is {_json_type(item)}, not an object")
                continue
            self.keys += len(item)
            yield where, item

    def senml(self, records: list[Any]) -> None:
        base_name, base_time, base_unit = "", 0.0, None
        for where, record in self.objects(records, "record"):
            if not record.keys() <= SENML_FIELDS:
                unsupported = sorted(set(record) - SENML_FIELDS)[0]
                self.bad_shape(f"{where}: unsupported SenML field {quoted(unsupported)}")
                continue
            if "bn" in record:
                base_name = self.string(record["bn"], f"{where}: bn") or ""
            if "bt" in record:
                base_time = self.number(record["bt"], f"{where}: bt") or 0.0
            if "bu" in record:
                base_unit = self.string(record["bu"], f"{where}: bu")
            if "bver" in record:
                self.number(record["bver"], f"{where}: bver")
            has_v, has_s = "v" in record, "s" in record
            if not has_v and not has_s:
                if "n" in record or "u" in record or "t" in record:
                    self.bad_shape(f"{where} has no value (v or s)")
                continue  # a record of base fields only
            if has_v and has_s:
                self.bad_shape(f"{where} has both v and s")
                continue
            name = self.string(record["n"], f"{where}: n") if "n" in record else ""
            unit = self.string(record["u"], f"{where}: u") if "u" in record else base_unit
            value = self.number(record["v"] if has_v else record["s"], f"{where}: value")
            offset = self.number(record["t"], f"{where}: t") if "t" in record else 0.0
            if name is None or value is None or offset is None:
                continue
            full_name = base_name + name
            quantity = full_name.rpartition(":")[2]
            ts = base_time + offset
            if ts < SENML_RELATIVE_LIMIT_S:
                ts += self.received_at_s
            self.add(quantity, unit, value, ts, where)

    def simple(self, objects: list[Any]) -> None:
        for where, obj in self.objects(objects, "item"):
            if "ts" not in obj:
                self.bad_shape(f"{where} has no ts")
                continue
            ts = self.timestamp(obj["ts"], f"{where}: ts")
            if len(obj) == 1:
                self.bad_shape(f"{where} has a ts but no quantities")
                continue
            for name, raw in obj.items():
                if name == "ts":
                    continue
                if ":" in name:
                    self.colons += name.count(":")
                value = self.number(raw, f"{where}: {safe_text(name)}")
                if value is not None and ts is not None:
                    self.add(name, None, value, ts, where)


def decode_into(
    payload: bytes, *, kind: Kind, received_at_s: float, msg: int, rows: RowBuffer, limits: Limits
) -> Rejection | None:
    """Decode one message, appending its readings to `rows` (as message `msg`); a rejection leaves `rows` as it was.

    Range and time checks are left to `ingest.rows.check_rows`, which runs on a whole batch.
    """
    try:
        return _decode_into(payload, kind, received_at_s, msg, rows, limits)
    except RecursionError:  # not expected (the walk is flat), but input must never crash the ingester
        return Rejection(RejectionReason.INVALID_JSON, "nested deeper than the parser allows")


def _decode_into(
    payload: bytes, kind: Kind, received_at_s: float, msg: int, rows: RowBuffer, limits: Limits
) -> Rejection | None:
    if len(payload) > limits.max_payload_bytes:
        return Rejection(
            RejectionReason.PAYLOAD_TOO_LARGE,
            f"{len(payload)} bytes, more than the limit of {limits.max_payload_bytes}",
        )
    document = load_json(payload)
    if isinstance(document, Rejection):
        return document
    mark = len(rows)
    rejection = _walk(payload, document, kind, received_at_s, msg, rows, limits)
    if rejection is not None:
        rows.truncate(mark)
    return rejection


def _walk(
    payload: bytes, document: Document, kind: Kind, received_at_s: float, msg: int, rows: RowBuffer, limits: Limits
) -> Rejection | None:
    walk = _Walk(kind, received_at_s, msg, rows, limits)
    value = document.value
    if type(value) is dict:
        walk.simple([value])
    elif type(value) is list and value:
        first = value[0]
        if type(first) is dict and "ts" in first:
            walk.simple(value)
        else:
            walk.senml(value)
    elif type(value) is list:
        walk.bad_shape("an empty array holds no readings")
    else:
        walk.bad_shape(f"expected a SenML pack or a JSON object, not {_json_type(value)}")
    if walk.non_finite is not None:
        return Rejection(RejectionReason.NON_FINITE_VALUE, walk.non_finite)
    if not document.exact and (
        walk.shape is not None or b"\\" in payload or payload.count(b":") != walk.keys + walk.colons
    ):
        duplicate = find_duplicate_key(payload)
        if duplicate is not None:
            return Rejection(RejectionReason.DUPLICATE_KEY, f"member {quoted(duplicate)} repeated in one object")
    if walk.shape is not None:
        return Rejection(RejectionReason.INVALID_SHAPE, walk.shape)
    if walk.vocabulary is not None:
        rank, detail = walk.vocabulary
        return Rejection(_VOCABULARY_REASONS[rank], detail)
    if walk.readings == 0:
        return Rejection(RejectionReason.INVALID_SHAPE, "no readings in the message")
    return None


def decode_payload(
    payload: bytes, *, kind: Kind, received_at_s: float, limits: Limits | None = None
) -> Rows | Rejection:
    """Decode and fully check one message on its own: its rows (all of message 0), or why it was rejected."""
    limits = limits or Limits()
    rows = RowBuffer()
    rejection = decode_into(payload, kind=kind, received_at_s=received_at_s, msg=0, rows=rows, limits=limits)
    if rejection is not None:
        return rejection
    checked, rejections = check_rows(rows, np.array([received_at_s]), limits)
    return rejections.get(0) or checked
