"""The plain paths of the decoder: the common payloads, stored without the careful walk.

A payload takes a plain path only when nothing about it could fail before the range and time checks (see
`ingest.decode`): known names for the sensor's kind, numbers where numbers belong, strings where strings belong, no
escapes, and one `:` per member so that no member name repeats. Anything else returns False and gets the full walk,
which decides the same way (a property test compares the two) and names what is wrong.
"""

from __future__ import annotations

from typing import Any

from ingest.rows import Limits, RowBuffer
from livinglab.domain import QUANTITIES, Kind, Unit

#: SenML times below this are relative to the time of receipt (RFC 8428 section 4.5.3).
SENML_RELATIVE_LIMIT_S = 2**28
SENML_FIELDS = frozenset({"bn", "bt", "bu", "bver", "n", "u", "v", "s", "t"})
_VALUE_FIELDS = frozenset({"n", "u", "v", "t"})
_PLAIN_FIELDS = SENML_FIELDS - {"s"}
_MISSING: Any = object()

#: name -> (code, accepted units) of the quantities a sensor of each kind may report.
VOCABULARY: dict[Kind, dict[str, tuple[int, dict[str, Unit]]]] = {
    kind: {q.name: (q.code, dict(q.units)) for q in QUANTITIES.values() if q.kind is kind} for kind in Kind
}


def plain_object(rows: RowBuffer, limits: Limits, payload: bytes, obj: dict[str, Any], kind: Kind, msg: int) -> bool:
    """The most common message, `{"ts": <number>, "<quantity>": <number>, ...}`, stored without the walk.

    Only when nothing could fail before the range and time checks: every name known for this kind, every value a
    JSON number, no escapes and one colon per member (so no name repeats). Anything else takes the full walk.
    """
    ts: Any = obj.get("ts")
    kind_of_ts = type(ts)
    n = len(obj)
    if (
        (kind_of_ts is not float and kind_of_ts is not int)
        or n < 2
        or n - 1 > limits.max_records
        or payload.count(b":") != n
        or b"\\" in payload
    ):
        return False
    vocabulary = VOCABULARY[kind]
    codes = []
    values = []
    for name, raw in obj.items():
        if name == "ts":
            continue
        entry = vocabulary.get(name)
        kind_of_raw = type(raw)
        if entry is None or (kind_of_raw is not float and kind_of_raw is not int):
            return False
        codes.append(entry[0])
        values.append(float(raw))
    ts = float(ts)
    count = n - 1
    if count == 1:
        rows.msg.append(msg)
        rows.code.append(codes[0])
        rows.scale.append(1.0)
        rows.offset.append(0.0)
        rows.value.append(values[0])
        rows.ts.append(ts)
        return True
    rows.msg.extend([msg] * count)
    rows.code.extend(codes)
    rows.scale.extend([1.0] * count)
    rows.offset.extend([0.0] * count)
    rows.value.extend(values)
    rows.ts.extend([ts] * count)
    return True


def plain_pack(
    rows: RowBuffer, limits: Limits, payload: bytes, records: list[Any], kind: Kind, received_at_s: float, msg: int
) -> bool:
    """A SenML pack of plain records (numbers in `v`, `t`, `bt`; strings in `n`, `u`, `bn`, `bu`; known names
    and units) stored without the walk. Anything else, or anything that fails, takes the full walk."""
    if not records or b"\\" in payload or type(records[0]) is not dict or "ts" in records[0]:
        return False
    if len(records) == 1:
        return _single_record(rows, payload, records[0], kind, received_at_s, msg)
    uniform = _uniform_pack(rows, limits, payload, records, kind, received_at_s, msg)
    if uniform is not None:
        return uniform
    vocabulary = VOCABULARY[kind]
    base_name, base_time, base_unit = "", 0.0, None
    keys = colons = 0
    # (n, u) -> (code, scale, offset, colons in n and u): a pack repeats a few names many times.
    resolved: dict[tuple[str, Any], tuple[int, float, float, int]] = {}
    codes: list[int] = []
    scales: list[float] = []
    offsets: list[float] = []
    values: list[float] = []
    times: list[float] = []
    for record in records:
        if type(record) is not dict:
            return False
        keys += len(record)
        if not record.keys() <= _VALUE_FIELDS:
            if not record.keys() <= _PLAIN_FIELDS:
                return False
            resolved = {}  # base fields change what n and u resolve to
            if "bn" in record:
                base_name = record["bn"]
                if type(base_name) is not str:
                    return False
                colons += base_name.count(":")
            if "bt" in record:
                base_time = record["bt"]
                if type(base_time) is not float:
                    if type(base_time) is not int:
                        return False
                    base_time = float(base_time)
            if "bu" in record:
                base_unit = record["bu"]
                if type(base_unit) is not str:
                    return False
                colons += base_unit.count(":")
            if "bver" in record and type(record["bver"]) is not int:
                return False
        value = record.get("v", _MISSING)
        if value is _MISSING:
            if "n" in record or "u" in record or "t" in record:
                return False
            continue
        if type(value) is not float:
            if type(value) is not int:
                return False
            value = float(value)
        offset = record.get("t", 0.0)
        if type(offset) is not float:
            if type(offset) is not int:
                return False
            offset = float(offset)
        name = record.get("n", "")
        unit = record.get("u", _MISSING)
        if type(name) is not str or (unit is not _MISSING and type(unit) is not str):
            return False
        hit = resolved.get((name, unit))
        if hit is None:
            found = _resolve(vocabulary, base_name + name, base_unit if unit is _MISSING else unit)
            if found is None:
                return False
            hit = resolved[name, unit] = (*found, name.count(":") + (0 if unit is _MISSING else unit.count(":")))
        code, scale, unit_offset, name_colons = hit
        colons += name_colons
        ts = base_time + offset
        times.append(ts + received_at_s if ts < SENML_RELATIVE_LIMIT_S else ts)
        codes.append(code)
        scales.append(scale)
        offsets.append(unit_offset)
        values.append(value)
    count = len(codes)
    if not count or count > limits.max_records or payload.count(b":") != keys + colons:
        return False
    rows.msg.extend([msg] * count)
    rows.code.extend(codes)
    rows.scale.extend(scales)
    rows.offset.extend(offsets)
    rows.value.extend(values)
    rows.ts.extend(times)
    return True


def _resolve(
    vocabulary: dict[str, tuple[int, dict[str, Unit]]], name: str, unit: str | None
) -> tuple[int, float, float] | None:
    """(code, scale, offset) of a resolved SenML name and unit, or None when either is not accepted."""
    entry = vocabulary.get(name.rpartition(":")[2])
    if entry is None:
        return None
    if unit is None:
        return entry[0], 1.0, 0.0
    converter = entry[1].get(unit)
    return None if converter is None else (entry[0], converter.scale, converter.offset)


_NUMBER_TYPES = frozenset({float, int})
_UNIT_TYPES = frozenset({str, object})


def _uniform_pack(
    rows: RowBuffer, limits: Limits, payload: bytes, records: list[Any], kind: Kind, received_at_s: float, msg: int
) -> bool | None:
    """The usual gateway pack, column by column: base fields in the first record only, then records of `n`, `u`,
    `v`, `t` alone, with no `:` in `n` or `u`. True or False as `plain_pack`; None when the pack is not of that
    form (the record-by-record path then decides)."""
    head = records[0]
    if not head.keys() <= _PLAIN_FIELDS:
        return None
    base_name = head.get("bn", "")
    base_time = head.get("bt", 0.0)
    base_unit = head.get("bu")
    if (
        type(base_name) is not str
        or type(base_time) not in _NUMBER_TYPES
        or (base_unit is not None and type(base_unit) is not str)
        or ("bver" in head and type(head["bver"]) is not int)
    ):
        return None
    head_has_value = "v" in head
    body = records if head_has_value else records[1:]
    if not body or (not head_has_value and ("n" in head or "u" in head or "t" in head)):
        return None
    if set(map(type, body)) != {dict} or not all(map(_VALUE_FIELDS.issuperset, body)):
        return None
    values = [r.get("v", _MISSING) for r in body]
    offsets = [r.get("t", 0.0) for r in body]
    names = [r.get("n", "") for r in body]
    units = [r.get("u", _MISSING) for r in body]
    if (
        not set(map(type, values)) <= _NUMBER_TYPES
        or not set(map(type, offsets)) <= _NUMBER_TYPES
        or set(map(type, names)) != {str}
        or not set(map(type, units)) <= _UNIT_TYPES
    ):
        return None
    pairs = set(zip(names, units, strict=True))
    if any(":" in n or (u is not _MISSING and ":" in u) for n, u in pairs):
        return None
    vocabulary = VOCABULARY[kind]
    table: dict[tuple[str, Any], tuple[int, float, float]] = {}
    for name, unit in pairs:
        found = _resolve(vocabulary, base_name + name, base_unit if unit is _MISSING else unit)
        if found is None:
            return False
        table[name, unit] = found
    count = len(body)
    keys = sum(map(len, body)) + (0 if head_has_value else len(head))
    colons = base_name.count(":") + (base_unit.count(":") if base_unit else 0)
    if count > limits.max_records or payload.count(b":") != keys + colons:
        return False
    base = float(base_time)
    times = [base + t for t in offsets]
    if base + min(offsets) < SENML_RELATIVE_LIMIT_S:  # some times are relative to the receipt
        times = [t + received_at_s if t < SENML_RELATIVE_LIMIT_S else t for t in times]
    if len(table) == 1:
        code, scale, offset = next(iter(table.values()))
        rows.code.extend([code] * count)
        rows.scale.extend([scale] * count)
        rows.offset.extend([offset] * count)
    else:
        resolved = [table[pair] for pair in zip(names, units, strict=True)]
        rows.code.extend([r[0] for r in resolved])
        rows.scale.extend([r[1] for r in resolved])
        rows.offset.extend([r[2] for r in resolved])
    rows.msg.extend([msg] * count)
    rows.value.extend(map(float, values))
    rows.ts.extend(times)
    return True


def _single_record(
    rows: RowBuffer, payload: bytes, record: dict[str, Any], kind: Kind, received_at_s: float, msg: int
) -> bool:
    """A pack of one record carrying its base fields, `[{"bn": ..., "bt": ..., "n": ..., "v": ...}]`: what a sensor
    that sends each reading as it takes it publishes."""
    if not record.keys() <= _PLAIN_FIELDS:
        return False
    value = record.get("v", _MISSING)
    offset = record.get("t", 0.0)
    base_time = record.get("bt", 0.0)
    base_name = record.get("bn", "")
    name = record.get("n", "")
    unit = record.get("u", _MISSING)
    base_unit = record.get("bu")
    if (
        type(value) not in _NUMBER_TYPES
        or type(offset) not in _NUMBER_TYPES
        or type(base_time) not in _NUMBER_TYPES
        or type(base_name) is not str
        or type(name) is not str
        or (unit is not _MISSING and type(unit) is not str)
        or (base_unit is not None and type(base_unit) is not str)
        or ("bver" in record and type(record["bver"]) is not int)
    ):
        return False
    colons = base_name.count(":") + name.count(":")
    if unit is not _MISSING:
        colons += unit.count(":")
    if base_unit is not None:
        colons += base_unit.count(":")
    if payload.count(b":") != len(record) + colons:
        return False
    found = _resolve(VOCABULARY[kind], base_name + name, base_unit if unit is _MISSING else unit)
    if found is None:
        return False
    ts = float(base_time) + offset
    rows.msg.append(msg)
    rows.code.append(found[0])
    rows.scale.append(found[1])
    rows.offset.append(found[2])
    rows.value.append(float(value))
    rows.ts.append(ts + received_at_s if ts < SENML_RELATIVE_LIMIT_S else ts)
    return True
