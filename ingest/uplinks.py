"""LoRaWAN uplinks (CONTRACT.md section 6): a network server's JSON in, rows of readings out. Never raises on input.

The two envelopes, as their projects define them (proto3 JSON: members whose value is zero, empty or false are left
out, so a missing frame counter is 0):

- ChirpStack v4 `UplinkEvent` (api/proto/integration/integration.proto): the device is `deviceInfo.devEui`, the time
  `time`, the frame counter `fCnt`, the codec output `object` (set only when the device profile has a codec);
- The Things Stack v3 `ApplicationUp` with an `uplink_message` (api/messages.proto): the device is
  `end_device_ids.dev_eui`, the time `uplink_message.received_at` (else `received_at`), the frame counter
  `uplink_message.f_cnt`, the codec output `uplink_message.decoded_payload`.

Times are RFC 3339 with up to nine fractional digits; they are truncated to microseconds (the resolution of a stored
reading). Without one, the time of receipt is used.

Checks run in the order of section 1 where they apply, the first failure naming the message: size, UTF-8,
non-finite numbers, JSON, duplicate member names, the envelope's shape (`invalid_shape`); then the device
(`unknown_sensor` for a DevEUI no sensor has); then `undecoded_payload` (no codec output); then the members of the
codec output: a non-finite or non-numeric value where a reading belongs (`non_finite_value`, `invalid_shape`), a
member named like a quantity of the other kind (`kind_mismatch`), and `no_readings` when nothing maps; range and time
are checked on the whole batch (`ingest.rows.check_rows`). Members that map to nothing are counted, not rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson

from ingest._json import classify_refused, find_duplicate_key
from ingest.outcome import Rejection, quoted
from ingest.rows import Limits, RowBuffer
from ingest.uplink_topics import UplinkSource
from livinglab.domain import QUANTITIES, RejectionReason
from livinglab.field_maps import DEV_EUI_RE, Target, normalize_dev_eui
from livinglab.storage.registry import RegistryEntry

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
_MAX_FCNT = 2**32 - 1
#: Integers the plain path converts to floats itself (larger ones take the careful look, which handles overflow).
_INT_LIMIT = 2**63
#: DevEUIs as written -> as looked up (lower-case), for the few thousand devices a platform hears from; bounded, so
#: a flood of made-up ones costs only the check.
_DEV_EUIS: dict[str, str] = {}
_MAX_DEV_EUIS = 100_000
_MISSING: Any = object()
#: The member of codec output that carries a reading's own time (CONTRACT.md section 6).
TIME_MEMBER = "ts"
#: Uplinks are parsed by msgspec's generic decoder: on par with orjson for ChirpStack's kilobyte of envelope (2.3-2.4
#: us each, measured side by side) and about a third faster for The Things Stack's (2.5 against 3.7 us). It refuses
#: what orjson refuses (invalid UTF-8, NaN and Infinity, lone surrogates, control characters, trailing data); numbers
#: beyond a double it leaves to the slow path, which reads them as infinity (so `out_of_range`). A typed decode (a
#: `msgspec.Struct` of the members used, 0.8 us) is not used: it skips the other members without checking their
#: UTF-8, and a repeated member name among them would go unseen (the check below needs the whole document).
_JSON = msgspec.json.Decoder()


@dataclass(slots=True)
class Uplink:
    """What an uplink's envelope says: the device (lower-case DevEUI, None when it names none), the uplink's time
    (None: use the time of receipt), the frame counter and the codec output (None: no codec). Not frozen: a frozen
    dataclass costs three times as much to make, once per uplink; nothing changes one after `parse_uplink`."""

    dev_eui: str | None
    time_s: float | None
    fcnt: int
    output: dict[str, Any] | None


def _shape(detail: str) -> Rejection:
    return Rejection(RejectionReason.INVALID_SHAPE, detail)


def _may_repeat_names(payload: bytes, document: Any) -> bool:
    """Whether a parsed payload might have repeated a member name (which the parser silently collapses).

    orjson writes every member of the document once. When that writing is the payload byte for byte (a compact
    payload that writes its numbers and strings as orjson does, as the simulator's uplinks do), no name was
    repeated: the payload would then hold a member the document lacks. Otherwise orjson writes every member
    followed by one `:`, and strings unescaped apart from control characters, so its output holds as many `:` bytes
    as the document has members plus the `:` inside its strings. A payload without backslash escapes that holds
    more than that repeated a member name; one that holds as many did not. Cheaper by far than walking the document
    (section 1 payloads use the same count, see `ingest.decode`).
    """
    try:
        written = orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits: let the exact scan decide
        return True
    if written == payload:
        return False
    if b"\\" in payload:
        return True
    return payload.count(b":") != written.count(b":")


def rfc3339_seconds(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with a UTC offset, truncated to microseconds; None if it is not
    one. (Python's parser keeps six fractional digits and drops the rest, which is the truncation wanted.)"""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def parse_uplink(payload: bytes, source: UplinkSource, limits: Limits) -> Uplink | Rejection:
    """The envelope of an uplink, or why the message is refused before its device is even known."""
    if len(payload) > limits.max_payload_bytes:
        return Rejection(
            RejectionReason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes, more than the limit {limits.max_payload_bytes}"
        )
    try:
        document = _JSON.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        refused = classify_refused(payload)
        if isinstance(refused, Rejection):
            return refused
        document = refused.value
    else:
        if _may_repeat_names(payload, document):
            duplicate = find_duplicate_key(payload)
            if duplicate is not None:
                return Rejection(RejectionReason.DUPLICATE_KEY, f"member {quoted(duplicate)} repeated in one object")
    if type(document) is not dict:
        return _shape(f"a {source.value} uplink is a JSON object")
    if source is UplinkSource.CHIRPSTACK:
        return _envelope(document.get("deviceInfo"), document.get("time"), document, _CHIRPSTACK_NAMES)
    message = document.get("uplink_message")
    if type(message) is not dict:
        return _shape("no uplink_message object: not an uplink of The Things Stack")
    received_at = message.get("received_at", document.get("received_at"))
    return _envelope(document.get("end_device_ids"), received_at, message, _TTS_NAMES)


#: Where each server keeps the parts: the object holding the DevEUI and its member, the time, the frame counter and
#: the codec output (the last two in the object `_envelope` is given).
_CHIRPSTACK_NAMES = ("deviceInfo", "devEui", "time", "fCnt", "object")
_TTS_NAMES = ("end_device_ids", "dev_eui", "received_at", "f_cnt", "decoded_payload")


def _envelope(
    ids: Any, raw_time: Any, holder: dict[str, Any], names: tuple[str, str, str, str, str]
) -> Uplink | Rejection:
    """The parts of an envelope, wherever the server keeps them: `ids` holds the DevEUI, `holder` the frame
    counter and codec output; `names` says what each is called (for the details of a rejection)."""
    if type(ids) is not dict:
        return _shape(f"no {names[0]} object")
    raw_eui = ids.get(names[1])
    dev_eui = _DEV_EUIS.get(raw_eui) if type(raw_eui) is str else None
    if dev_eui is None and raw_eui is not None:
        if type(raw_eui) is not str or not DEV_EUI_RE.match(raw_eui):
            return _shape(f"{names[0]}.{names[1]} {quoted(str(raw_eui))} is not 16 hex digits")
        if len(_DEV_EUIS) >= _MAX_DEV_EUIS:
            _DEV_EUIS.clear()
        dev_eui = _DEV_EUIS[raw_eui] = normalize_dev_eui(raw_eui)
    time_s: float | None = None
    if raw_time is not None:
        time_s = rfc3339_seconds(raw_time) if type(raw_time) is str else None
        if time_s is None:
            return _shape(f"{names[2]} {quoted(str(raw_time))} is not an RFC 3339 time with a UTC offset")
    fcnt = holder.get(names[3], 0)
    if type(fcnt) is not int:
        if type(fcnt) is float and fcnt.is_integer():
            fcnt = int(fcnt)  # a document the slow parser read (it reads every integer as a float)
        else:
            return _shape(f"{names[3]} {quoted(str(fcnt))} is not a frame counter")
    if not 0 <= fcnt <= _MAX_FCNT:
        return _shape(f"{names[3]} {quoted(str(fcnt))} is not a frame counter")
    output = holder.get(names[4])
    if output is not None and type(output) is not dict:
        return _shape(f"{names[4]} is not an object")
    return Uplink(dev_eui, time_s, fcnt, output)


class _Members:
    """The judgement of one codec output: the first problem of each rank, and what was ignored."""

    __slots__ = ("ignored", "kind", "non_finite", "shape")

    def __init__(self) -> None:
        self.non_finite: str | None = None
        self.shape: str | None = None
        self.kind: str | None = None
        self.ignored = 0

    def number(self, raw: Any, name: str) -> float | None:
        """A reading's value: a JSON number, or a string holding one in JSON syntax (as in section 1)."""
        kind = type(raw)
        if kind is float:
            return raw  # type: ignore[no-any-return]
        if kind is int:
            try:
                return float(raw)
            except OverflowError:
                return float("inf") if raw > 0 else float("-inf")
        if kind is str:
            if _NUMBER.fullmatch(raw):
                return float(raw)
            if _NON_FINITE.fullmatch(raw):
                self.non_finite = self.non_finite or f"{quoted(name)}: non-finite value {quoted(raw)}"
                return None
        if self.shape is None:
            self.shape = f"{quoted(name)} is not a number ({quoted(str(raw), 40)})"
        return None

    def timestamp(self, raw: Any) -> float | None:
        """The codec's own time for its readings: Unix seconds, or RFC 3339 with a UTC offset."""
        if type(raw) is str and not _NUMBER.fullmatch(raw) and not _NON_FINITE.fullmatch(raw):
            parsed = rfc3339_seconds(raw)
            if parsed is None and self.shape is None:
                self.shape = f"ts {quoted(raw)} is not an RFC 3339 time with a UTC offset"
            return parsed
        return self.number(raw, TIME_MEMBER)


def decode_uplink(
    uplink: Uplink, entry: RegistryEntry, *, rows: RowBuffer, msg: int, received_at_s: float, limits: Limits
) -> tuple[Rejection | None, int]:
    """Append the readings of a known sensor's uplink to `rows` as message `msg`; returns why it is rejected (then
    `rows` is as it was) and how many codec members were ignored."""
    output = uplink.output
    if output is None:
        return Rejection(
            RejectionReason.UNDECODED_PAYLOAD,
            "the uplink carries no codec output: give the device (profile) a payload codec",
        ), 0
    members_map = entry.member_map
    members = members_map.members
    ts = uplink.time_s if uplink.time_s is not None else received_at_s
    if not members_map.pointers and TIME_MEMBER not in output:
        plain = _plain(output, members, rows, msg, ts, limits)
        if plain is not None:
            return None, plain
    judged = _Members()
    own_time = output.get(TIME_MEMBER, _MISSING)
    if own_time is not _MISSING:
        parsed = judged.timestamp(own_time)
        ts = parsed if parsed is not None else ts
    found: list[tuple[Target, float]] = []
    for name, raw in output.items():
        if name == TIME_MEMBER:
            continue
        target = members.get(name, _MISSING)
        if target is _MISSING:
            other = QUANTITIES.get(name)
            if other is not None and judged.kind is None:
                judged.kind = f"{quoted(name)} is a {other.kind.value} quantity, the sensor is {entry.kind.value}"
            elif other is None and name not in members_map.roots:
                judged.ignored += 1
            continue
        if target is None or raw is None:  # ignored by the map, or a codec saying "no value"
            judged.ignored += 1
            continue
        value = raw if type(raw) is float else judged.number(raw, name)
        if value is not None:
            found.append((target, value))
    for tokens, target in members_map.pointers:
        raw = _resolve(output, tokens)
        if raw is not _MISSING and raw is not None:
            value = raw if type(raw) is float else judged.number(raw, "/" + "/".join(tokens))
            if value is not None:
                found.append((target, value))
    if len(found) > limits.max_records:
        judged.shape = judged.shape or f"more than {limits.max_records} readings in one uplink"
    rejection = _verdict(judged, found, entry)
    if rejection is not None:
        return rejection, 0
    for target, value in found:
        rows.msg.append(msg)
        rows.code.append(target.code)
        rows.scale.append(target.scale)
        rows.offset.append(target.offset)
        rows.value.append(value)
        rows.ts.append(ts)
    return None, judged.ignored


def _plain(
    output: dict[str, Any], members: Mapping[str, Target | None], rows: RowBuffer, msg: int, ts: float, limits: Limits
) -> int | None:
    """The usual codec output, stored without the careful look: every member a number that maps to a quantity, or
    a name that is no quantity at all (ignored). Returns the members ignored, or None (nothing appended) when the
    output needs the careful look of `decode_uplink`."""
    found: list[tuple[Target, float]] = []
    ignored = 0
    for name, raw in output.items():
        target = members.get(name)
        if target is not None and (type(raw) is float or (type(raw) is int and -_INT_LIMIT < raw < _INT_LIMIT)):
            found.append((target, raw))
        elif target is None and name not in members and name not in QUANTITIES:
            ignored += 1
        else:
            return None
    if not found or len(found) > limits.max_records:
        return None
    for target, value in found:
        rows.msg.append(msg)
        rows.code.append(target.code)
        rows.scale.append(target.scale)
        rows.offset.append(target.offset)
        rows.value.append(float(value))
        rows.ts.append(ts)
    return ignored


def _resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    for token in tokens:
        if type(document) is dict:
            document = document.get(token, _MISSING)
        elif type(document) is list and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return _MISSING
        if document is _MISSING:
            return _MISSING
    return document


def _verdict(judged: _Members, found: list[tuple[Target, float]], entry: RegistryEntry) -> Rejection | None:
    if judged.non_finite is not None:
        return Rejection(RejectionReason.NON_FINITE_VALUE, judged.non_finite)
    if judged.shape is not None:
        return _shape(judged.shape)
    if judged.kind is not None:
        return Rejection(RejectionReason.KIND_MISMATCH, judged.kind)
    if not found:
        return Rejection(
            RejectionReason.NO_READINGS,
            f"no member of the codec output maps to a quantity of this {entry.kind.value} sensor"
            " (name members after quantities, or give the sensor a field_map)",
        )
    return None
