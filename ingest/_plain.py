"""The plain paths of the decoder, and the invariants they share with the full walk (`ingest.decode`).

A payload takes a plain path only when nothing about it could fail before the range and time checks: known names
for the sensor's kind, numbers where numbers belong, strings where strings belong, a SenML version this platform
reads, and no member name repeated. Anything else returns False and gets the full walk, which decides the same way
(a property test compares the two) and names what is wrong.

Two paths earn their place, each by a row of `python -m benchmarks.ingest` (the build step per message with the
path turned off): `object`, the single-reading message `{"ts": <number>, "<quantity>": <number>, ...}`, and
`senml`, a SenML pack record by record, which resolves each (name, unit) pair once per pack.

Each invariant lives in one function here, used by the plain paths and the walk alike: `names_unique` (no member
name can repeat) and `senml_version_problem` (RFC 8428 section 4.4).
"""

from __future__ import annotations

from typing import Any

from ingest.rows import Limits, RowBuffer
from livinglab.domain import QUANTITIES, Kind, Unit

#: SenML times below this are relative to the time of receipt (RFC 8428 section 4.5.3).
SENML_RELATIVE_LIMIT_S = 2**28
#: The SenML version this platform reads: RFC 8428's. A pack declaring a later one is refused (section 4.4).
SENML_VERSION = 10
SENML_FIELDS = frozenset({"bn", "bt", "bu", "bver", "n", "u", "v", "s", "t"})
#: The plain paths of `PayloadDecoder`, by the names the benchmark turns them off with.
PLAIN_PATHS = frozenset({"object", "senml"})
_VALUE_FIELDS = frozenset({"n", "u", "v", "t"})
_PLAIN_FIELDS = SENML_FIELDS - {"s"}
_MISSING: Any = object()

#: name -> (code, accepted units) of the quantities a sensor of each kind may report.
VOCABULARY: dict[Kind, dict[str, tuple[int, dict[str, Unit]]]] = {
    kind: {q.name: (q.code, dict(q.units)) for q in QUANTITIES.values() if q.kind is kind} for kind in Kind
}


def names_unique(payload: bytes, members: int, colons: int) -> bool:
    """True when no member name can repeat in a well-formed `payload` whose objects hold `members` members in all
    and whose strings hold `colons` colons in all.

    orjson keeps the last of repeated members silently. Outside strings, every member name is followed by exactly
    one `:`, so without backslash escapes (which could spell a colon or a name another way) the payload's count of
    `:` bytes is `members + colons` exactly when the parse saw every member, that is, when no name repeats.
    False means only that the payload must be scanned (`ingest._json.find_duplicate_key`).
    """
    return b"\\" not in payload and payload.count(b":") == members + colons


def senml_version_problem(version: float) -> str | None:
    """Why a pack with this `bver` must not be used, or None: RFC 8428 section 4.4 makes the version a positive
    integer and forbids using a pack of a version newer than the reader understands."""
    if not float(version).is_integer() or version < 1:
        return f"bver {version:g} is not a positive integer"
    if version > SENML_VERSION:
        return f"bver {version:g} is a SenML version newer than {SENML_VERSION}, the version this platform reads"
    return None


def plain_object(rows: RowBuffer, limits: Limits, payload: bytes, obj: dict[str, Any], kind: Kind, msg: int) -> bool:
    """The single-reading message, `{"ts": <number>, "<quantity>": <number>, ...}`, stored without the walk."""
    ts: Any = obj.get("ts")
    kind_of_ts = type(ts)
    n = len(obj)
    if (kind_of_ts is not float and kind_of_ts is not int) or n < 2 or n - 1 > limits.max_records:
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
    if not names_unique(payload, n, 0):  # names are known quantities and values numbers: no colon in a string
        return False
    count = n - 1
    if count == 1:  # the usual message: appends cost a third of this path less than extends
        rows.msg.append(msg)
        rows.code.append(codes[0])
        rows.scale.append(1.0)
        rows.offset.append(0.0)
        rows.value.append(values[0])
        rows.ts.append(float(ts))
        return True
    rows.msg.extend([msg] * count)
    rows.code.extend(codes)
    rows.scale.extend([1.0] * count)
    rows.offset.extend([0.0] * count)
    rows.value.extend(values)
    rows.ts.extend([float(ts)] * count)
    return True


#: (bn, bu, n, u) -> (code, scale, offset, colons in n and u) of the names a decoder has resolved for one kind.
NameCache = dict[tuple[str, Any, str, Any], tuple[int, float, float, int]]


def plain_pack(
    rows: RowBuffer,
    limits: Limits,
    payload: bytes,
    records: list[Any],
    kind: Kind,
    received_at_s: float,
    msg: int,
    names: NameCache,
) -> bool:
    """A SenML pack of plain records (numbers in `v`, `t`, `bt`; strings in `n`, `u`, `bn`, `bu`; known names
    and units; a readable `bver`) stored without the walk. Anything else takes the full walk.

    `names` caches name resolution for packs of `kind` across a batch: a device sends the same few names in every
    pack, and a gateway's pack repeats them many times.
    """
    if not records or type(records[0]) is not dict or "ts" in records[0]:
        return False
    vocabulary = VOCABULARY[kind]
    base_name, base_time, base_unit = "", 0.0, None
    members = colons = 0
    codes: list[int] = []
    scales: list[float] = []
    offsets: list[float] = []
    values: list[float] = []
    times: list[float] = []
    for record in records:
        if type(record) is not dict:
            return False
        members += len(record)
        if not record.keys() <= _VALUE_FIELDS:
            if not record.keys() <= _PLAIN_FIELDS:
                return False
            base = _plain_base(record, base_name, base_time, base_unit)
            if base is None:
                return False
            base_name, base_time, base_unit, base_colons = base
            colons += base_colons
        value = record.get("v", _MISSING)
        if value is _MISSING:
            if "n" in record or "u" in record or "t" in record:
                return False
            continue  # a record of base fields only
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
        key = (base_name, base_unit, name, unit)
        hit = names.get(key)
        if hit is None:
            found = _resolve(vocabulary, base_name + name, base_unit if unit is _MISSING else unit)
            if found is None:
                return False
            hit = names[key] = (*found, name.count(":") + (0 if unit is _MISSING else unit.count(":")))
        code, scale, unit_offset, name_colons = hit
        colons += name_colons
        ts = base_time + offset
        times.append(ts + received_at_s if ts < SENML_RELATIVE_LIMIT_S else ts)
        codes.append(code)
        scales.append(scale)
        offsets.append(unit_offset)
        values.append(value)
    count = len(codes)
    if not count or count > limits.max_records or not names_unique(payload, members, colons):
        return False
    rows.msg.extend([msg] * count)
    rows.code.extend(codes)
    rows.scale.extend(scales)
    rows.offset.extend(offsets)
    rows.value.extend(values)
    rows.ts.extend(times)
    return True


def _plain_base(
    record: dict[str, Any], name: str, time_s: float, unit: str | None
) -> tuple[str, float, str | None, int] | None:
    """(bn, bt, bu) after a record's base fields, and the colons in the strings it holds; None when a base field is
    not plain (a string in `bn` and `bu`, a number in `bt`, a readable integer in `bver`)."""
    name = record.get("bn", name)
    time_s = record.get("bt", time_s)
    new_unit = record.get("bu", _MISSING)
    version = record.get("bver", SENML_VERSION)
    if (
        type(name) is not str
        or (type(time_s) is not float and type(time_s) is not int)
        or (new_unit is not _MISSING and type(new_unit) is not str)
        or type(version) is not int
        or senml_version_problem(version) is not None
    ):
        return None
    colons = name.count(":") if "bn" in record else 0
    if new_unit is not _MISSING:
        unit = new_unit
        colons += new_unit.count(":")
    return name, float(time_s), unit, colons


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
