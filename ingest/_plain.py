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
    vocabulary = VOCABULARY[kind]
    base_name, base_time, base_unit = "", 0.0, None
    keys = colons = 0
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
        if type(name) is not str:
            return False
        if ":" in name:
            colons += name.count(":")
        if base_name:
            name = base_name + name
        entry = vocabulary.get(name.rpartition(":")[2] if ":" in name else name)
        if entry is None:
            return False
        unit = record.get("u", _MISSING)
        if unit is _MISSING:
            unit = base_unit
        elif type(unit) is not str:
            return False
        else:
            colons += unit.count(":")
        if unit is None:
            scales.append(1.0)
            offsets.append(0.0)
        else:
            converter = entry[1].get(unit)
            if converter is None:
                return False
            scales.append(converter.scale)
            offsets.append(converter.offset)
        ts = base_time + offset
        times.append(ts + received_at_s if ts < SENML_RELATIVE_LIMIT_S else ts)
        codes.append(entry[0])
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
