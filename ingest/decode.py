"""Payload decoding and validation: bytes in, rows or a rejection out. Never raises on input.

The two payload forms and the reason codes are fixed by CONTRACT.md section 1. Checks run in the contract's order
and the first failure names the message: size, UTF-8, non-finite numbers, JSON syntax, duplicate member names,
shape; then, over all records, unknown quantity, kind mismatch, unit; then (in `ingest.rows`, on whole columns)
range and time. One bad record rejects the whole message. Edge cases are decided in docs/devices.md.

Duplicate member names: orjson keeps the last one silently. The walk counts the members and the colons inside the
strings it saw; when `ingest._plain.names_unique` cannot rule a repeat out from that count (or the shape is odd),
the payload is re-scanned exactly. SenML `bver` must be a positive integer no newer than version 10 (RFC 8428
section 4.4; `invalid_shape` otherwise).

Speed: one `PayloadDecoder` serves a whole batch, appending to shared column lists; the common shapes (numbers
where numbers belong) take no detour, and failure details are composed only when something fails.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from ingest._json import classify_refused, find_duplicate_key
from ingest._plain import (
    PLAIN_PATHS,
    SENML_FIELDS,
    SENML_RELATIVE_LIMIT_S,
    VOCABULARY,
    NameCache,
    names_unique,
    plain_object,
    plain_pack,
    senml_version_problem,
)
from ingest.outcome import Rejection, quoted, safe_text
from ingest.rows import Limits, RowBuffer, Rows, check_rows
from livinglab.domain import QUANTITIES, Kind, RejectionReason

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
_INF = float("inf")
_MISSING: Any = object()
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


class PayloadDecoder:
    """Decodes the payloads of one batch into `rows` (see `decode`). Not thread-safe; one per batch.

    `paths` names the plain paths tried before the full walk (`ingest._plain.PLAIN_PATHS`); tests compare them with
    the walk alone, the benchmark turns each off.
    """

    def __init__(self, rows: RowBuffer, limits: Limits, *, paths: AbstractSet[str] = PLAIN_PATHS) -> None:
        unknown = set(paths) - PLAIN_PATHS
        if unknown:
            raise ValueError(f"unknown plain paths: {', '.join(sorted(unknown))}")
        self.rows = rows
        self.limits = limits
        self._plain_object = "object" in paths
        self._plain_pack = "senml" in paths
        self._names: dict[Kind, NameCache] = {kind: {} for kind in Kind}
        self._append = (rows.msg.append, rows.code.append, rows.scale.append, rows.offset.append, rows.value.append,
                        rows.ts.append)  # fmt: skip
        self._reset(Kind.AIR, 0.0, 0)

    def _reset(self, kind: Kind, received_at_s: float, msg: int) -> None:
        self.kind = kind
        self.vocabulary = VOCABULARY[kind]
        self.received_at_s = received_at_s
        self.msg = msg
        self.label = "item"
        self.non_finite: str | None = None
        self.shape: str | None = None
        self.word: tuple[int, str] | None = None
        self.readings = 0
        self.keys = 0  # members of every object walked
        self.colons = 0  # ':' inside every string walked

    def decode(self, payload: bytes, *, kind: Kind, received_at_s: float, msg: int) -> Rejection | None:
        """Decode one message, appending its readings to `rows` as message `msg`; a rejection leaves `rows` as it
        was. Range and time checks are left to `ingest.rows.check_rows`, which runs on the whole batch."""
        limits = self.limits
        if len(payload) > limits.max_payload_bytes:
            return Rejection(
                RejectionReason.PAYLOAD_TOO_LARGE,
                f"{len(payload)} bytes, more than the limit {limits.max_payload_bytes}",
            )
        try:
            value = orjson.loads(payload)
            exact = False
        except orjson.JSONDecodeError:
            document = classify_refused(payload)
            if isinstance(document, Rejection):
                return document
            value, exact = document.value, True
        else:
            plain = type(value)
            if plain is dict and self._plain_object and plain_object(self.rows, limits, payload, value, kind, msg):
                return None
            if (
                plain is list
                and self._plain_pack
                and plain_pack(self.rows, limits, payload, value, kind, received_at_s, msg, self._names[kind])
            ):
                return None
        mark = len(self.rows.code)
        self._reset(kind, received_at_s, msg)
        try:
            rejection = self._walk(payload, value, exact)
        except RecursionError:  # not expected (the walk is flat), but input must never crash the ingester
            rejection = Rejection(RejectionReason.INVALID_JSON, "nested deeper than the parser allows")
        if rejection is not None:
            self.rows.truncate(mark)
        return rejection

    # -- the walk ---------------------------------------------------------------------------------------------

    def _walk(self, payload: bytes, value: Any, exact: bool) -> Rejection | None:
        kind = type(value)
        if kind is dict:
            self._simple(value, 0)
        elif kind is list and value:
            first = value[0]
            if type(first) is dict and "ts" in first:
                for index, item in enumerate(value):
                    self._simple(item, index)
            else:
                self.label = "record"
                self._senml(value)
        elif kind is list:
            self.bad_shape("an empty array holds no readings")
        else:
            self.bad_shape(f"expected a SenML pack or a JSON object, not {_json_type(value)}")
        if self.non_finite is not None:
            return Rejection(RejectionReason.NON_FINITE_VALUE, self.non_finite)
        if not exact and (self.shape is not None or not names_unique(payload, self.keys, self.colons)):
            duplicate = find_duplicate_key(payload)
            if duplicate is not None:
                return Rejection(RejectionReason.DUPLICATE_KEY, f"member {quoted(duplicate)} repeated in one object")
        if self.shape is not None:
            return Rejection(RejectionReason.INVALID_SHAPE, self.shape)
        if self.word is not None:
            rank, detail = self.word
            return Rejection(_VOCABULARY_REASONS[rank], detail)
        if self.readings == 0:
            return Rejection(RejectionReason.INVALID_SHAPE, "no readings in the message")
        return None

    def _simple(self, obj: Any, index: int) -> None:
        if type(obj) is not dict:
            self.bad_shape(f"item {index} is {_json_type(obj)}, not an object")
            return
        self.keys += len(obj)
        ts = obj.get("ts", _MISSING)
        if ts is _MISSING:
            self.bad_shape(f"item {index} has no ts")
            return
        if type(ts) is not float:
            ts = self.timestamp(ts, index)
        if len(obj) == 1:
            self.bad_shape(f"item {index} has a ts but no quantities")
            return
        for name, raw in obj.items():
            if name == "ts":
                continue
            if ":" in name:
                self.colons += name.count(":")
            value = raw if type(raw) is float else self.number(raw, index, name)
            if value is not None and ts is not None:
                self.add(name, None, value, ts, index)

    def _senml(self, records: list[Any]) -> None:
        base_name, base_time, base_unit = "", 0.0, None
        received_at_s = self.received_at_s
        for index, record in enumerate(records):
            if type(record) is not dict:
                self.bad_shape(f"record {index} is {_json_type(record)}, not an object")
                continue
            self.keys += len(record)
            if not record.keys() <= SENML_FIELDS:
                unsupported = sorted(set(record) - SENML_FIELDS)[0]
                self.bad_shape(f"record {index}: unsupported SenML field {quoted(unsupported)}")
                continue
            if "bn" in record:
                base_name = self.string(record["bn"], index, "bn") or ""
            if "bt" in record:
                base_time = self.number(record["bt"], index, "bt") or 0.0
            if "bu" in record:
                base_unit = self.string(record["bu"], index, "bu")
            if "bver" in record:
                version = self.number(record["bver"], index, "bver")
                problem = None if version is None else senml_version_problem(version)
                if problem is not None:
                    self.bad_shape(f"record {index}: {problem}")
            raw = record.get("v", _MISSING)
            if raw is _MISSING:
                raw = record.get("s", _MISSING)
                if raw is _MISSING:
                    if "n" in record or "u" in record or "t" in record:
                        self.bad_shape(f"record {index} has no value (v or s)")
                    continue  # a record of base fields only
            elif "s" in record:
                self.bad_shape(f"record {index} has both v and s")
                continue
            name = self.string(record["n"], index, "n") if "n" in record else ""
            unit = self.string(record["u"], index, "u") if "u" in record else base_unit
            value = raw if type(raw) is float else self.number(raw, index, "value")
            offset = record.get("t", 0.0)
            if type(offset) is not float:
                offset = self.number(offset, index, "t")
            if name is None or value is None or offset is None:
                continue
            full_name = base_name + name
            ts = base_time + offset
            if ts < SENML_RELATIVE_LIMIT_S:
                ts += received_at_s
            self.add(full_name.rpartition(":")[2], unit, value, ts, index)

    # -- fields -----------------------------------------------------------------------------------------------

    def bad_shape(self, detail: str) -> None:
        if self.shape is None:
            self.shape = detail

    def bad_word(self, rank: int, detail: str) -> None:
        if self.word is None or rank < self.word[0]:
            self.word = (rank, detail)

    def string(self, raw: Any, index: int, field: str) -> str | None:
        if type(raw) is str:
            if ":" in raw:
                self.colons += raw.count(":")
            return raw
        self.bad_shape(f"{self.label} {index}: {field} must be a string, not {_json_type(raw)}")
        return None

    def number(self, raw: Any, index: int, field: str) -> float | None:
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
                    self.non_finite = f"{self.label} {index}: {safe_text(field)}: non-finite value {raw!r}"
                return None
            self.bad_shape(f"{self.label} {index}: {safe_text(field)}: {quoted(raw)} is not a number")
            return None
        self.bad_shape(f"{self.label} {index}: {safe_text(field)} must be a number, not {_json_type(raw)}")
        return None

    def timestamp(self, raw: Any, index: int) -> float | None:
        """Simple JSON `ts`: ISO 8601 with a UTC offset, or Unix seconds."""
        if type(raw) is str and not _NUMBER.fullmatch(raw) and not _NON_FINITE.fullmatch(raw):
            self.colons += raw.count(":")
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                self.bad_shape(f"item {index}: ts {quoted(raw)} is not an ISO 8601 time")
                return None
            if parsed.tzinfo is None:
                self.bad_shape(f"item {index}: ts {quoted(raw)} has no UTC offset")
                return None
            return parsed.timestamp()
        return self.number(raw, index, "ts")

    def add(self, name: str, unit: str | None, value: float, ts: float, index: int) -> None:
        if self.readings >= self.limits.max_records:
            self.bad_shape(f"more than {self.limits.max_records} readings in one message")
            return
        entry = self.vocabulary.get(name)
        if entry is None:
            quantity = QUANTITIES.get(name)
            if quantity is None:
                self.bad_word(_UNKNOWN_QUANTITY, f"{self.label} {index}: unknown quantity {quoted(name)}")
            else:
                self.bad_word(
                    _KIND_MISMATCH,
                    f"{self.label} {index}: {name} is a {quantity.kind.value} quantity,"
                    f" the sensor is {self.kind.value}",
                )
            return
        code, units = entry
        if unit is None:
            scale, offset = 1.0, 0.0
        else:
            converter = units.get(unit)
            if converter is None:
                self.bad_word(
                    _BAD_UNIT,
                    f"{self.label} {index}: unit {quoted(unit)} is not accepted for {name}"
                    f" (accepted: {', '.join(units)})",
                )
                return
            scale, offset = converter.scale, converter.offset
        if ts != ts:  # NaN: only from adding opposite infinities
            self.bad_shape(f"{self.label} {index}: time is not a number")
            return
        append_msg, append_code, append_scale, append_offset, append_value, append_ts = self._append
        append_msg(self.msg)
        append_code(code)
        append_scale(scale)
        append_offset(offset)
        append_value(value)
        append_ts(ts)
        self.readings += 1


def decode_into(
    payload: bytes, *, kind: Kind, received_at_s: float, msg: int, rows: RowBuffer, limits: Limits
) -> Rejection | None:
    """Decode one message into `rows` (see `PayloadDecoder.decode`)."""
    return PayloadDecoder(rows, limits).decode(payload, kind=kind, received_at_s=received_at_s, msg=msg)


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
