"""Fault injection: rates, and malformed messages built to trigger each rejection reason of CONTRACT.md.

Each malformed message has exactly one defect, chosen so that the check that names it is the first to fail in the
contract's order (topic, registry, size, UTF-8, non-finite numbers, JSON, duplicate keys, shape, then per record:
quantity, kind, unit, range, future, too old). `conflicting_duplicate` and `unknown_sensor` have rates of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from livinglab.domain import MESSAGE_REASONS, QUANTITIES, Kind, RejectionReason
from livinglab.errors import ConfigurationError
from simulators.messages import Record, iso_time, senml_payload, simple_payload, topic_for

#: Reasons the `malformed` rate spreads over, in turn (LoRaWAN uplinks have faults of their own).
MALFORMED_REASONS: tuple[RejectionReason, ...] = tuple(
    r
    for r in RejectionReason
    if r in MESSAGE_REASONS and r not in (RejectionReason.UNKNOWN_SENSOR, RejectionReason.CONFLICTING_DUPLICATE)
)

#: Fault types the ledger counts, besides each malformed reason.
FAULT_TYPES = (
    "gap",
    "outage",
    "burst",
    "clock_skew",
    "late",
    "out_of_order",
    "duplicate",
    "conflicting_duplicate",
    "malformed",
    "unknown_sensor",
    "no_codec",
    "unknown_dev_eui",
    "extra_members",
    "fcnt_gap",
)
#: Fault rates that apply to LoRaWAN sensors only (`simulators.lorawan`).
LORAWAN_FAULTS = ("no_codec", "unknown_dev_eui", "extra_members", "fcnt_gap")


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often each fault happens. Per reading, per message, or per sensor-day as each field says."""

    #: Per reading time: the reading is lost (real networks lose 1-5 %).
    gap: float = 0.01
    #: Per sensor-day: the device goes silent for 10 minutes to 3 hours; what it measured then is lost.
    outage: float = 0.1
    #: Per sensor-day: the device buffers 10-60 readings (a link outage) and then sends them at once.
    burst: float = 0.1
    #: Per sensor-day: the device clock runs 5-60 s off for 1-6 hours (within the platform's skew tolerance).
    clock_skew: float = 0.05
    #: Per message: delivered 5-120 minutes late.
    late: float = 0.005
    #: Per message: overtaken by the device's next message.
    out_of_order: float = 0.005
    #: Per message: sent again, byte for byte.
    duplicate: float = 0.005
    #: Per message: one of its readings is sent again later with a different value.
    conflicting_duplicate: float = 0.002
    #: Per message: a malformed message follows it (reasons taken in turn).
    malformed: float = 0.003
    #: Per message: a message from a sensor the registry does not know follows it.
    unknown_sensor: float = 0.001
    #: LoRaWAN, per uplink: it arrives without codec output (the device profile lost its codec): rejected.
    no_codec: float = 0.002
    #: LoRaWAN, per uplink: an uplink from a DevEUI the registry does not know follows it.
    unknown_dev_eui: float = 0.001
    #: LoRaWAN, per uplink: the codec also reports battery, firmware and status (ignored and counted).
    extra_members: float = 0.2
    #: LoRaWAN, per uplink: it is lost between the network server and the platform (a QoS 0 hop), leaving a gap in
    #: the device's frame counter.
    fcnt_gap: float = 0.01

    @classmethod
    def off(cls) -> FaultRates:
        return cls(**{f.name: 0.0 for f in fields(cls)})

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """`off`, `default`, or comma-separated `name=rate` on top of the defaults (`off,name=rate` on top of none)."""
        rates = cls()
        for item in (part.strip() for part in text.split(",")):
            if not item or item in ("default", "on"):
                continue
            if item in ("off", "none"):
                rates = cls.off()
                continue
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in {f.name for f in fields(cls)}:
                known = ", ".join(f.name for f in fields(cls))
                raise ConfigurationError(f"faults: {item!r} is not name=rate (names: {known})")
            try:
                rate = float(value)
            except ValueError:
                raise ConfigurationError(f"faults: {item!r}: the rate is not a number") from None
            if not 0.0 <= rate <= 1.0:
                raise ConfigurationError(f"faults: {item!r}: a rate is between 0 and 1")
            rates = replace(rates, **{name: rate})
        return rates

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def any(self) -> bool:
        return any(v > 0 for v in asdict(self).values())


@dataclass(frozen=True, slots=True)
class Malformed:
    """A malformed message: where it goes and what it holds."""

    topic: str
    payload: bytes
    #: The kind named by the topic (`other` when it names none).
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class MalformedContext:
    """What a malformed-message builder may draw on: the sensor it imitates and one of its records."""

    prefix: str
    city: str
    kind: Kind
    sensor_id: str
    records: tuple[Record, ...]
    offset_h: float
    max_payload_bytes: int
    max_lateness_s: float
    rng: np.random.Generator

    def topic(self, kind: str | None = None, sensor_id: str | None = None, city: str | None = None) -> str:
        return topic_for(self.prefix, city or self.city, kind or self.kind.value, sensor_id or self.sensor_id)

    def pack(self, records: tuple[Record, ...] | None = None) -> bytes:
        return senml_payload(self.sensor_id, records or self.records)

    @property
    def first(self) -> Record:
        return self.records[0]


def _variant(ctx: MalformedContext, n: int) -> int:
    return int(ctx.rng.integers(n))


def _topic_invalid(ctx: MalformedContext) -> Malformed:
    choice = _variant(ctx, 3)
    if choice == 0:
        topic, detail = ctx.topic(sensor_id=ctx.sensor_id.upper()), "upper-case sensor id"
        kind = ctx.kind.value
    elif choice == 1:
        topic, detail, kind = ctx.topic(kind="water"), "unknown kind level", "other"
    else:
        topic, detail, kind = ctx.topic(city="Jakarta Pusat"), "city with a space", ctx.kind.value
    return Malformed(topic, ctx.pack(), kind, detail)


def _other_kind(kind: Kind) -> Kind:
    return Kind.TRAFFIC if kind is Kind.AIR else Kind.AIR


def _kind_mismatch(ctx: MalformedContext) -> Malformed:
    other = _other_kind(ctx.kind)
    if _variant(ctx, 2) == 0:
        return Malformed(ctx.topic(kind=other.value), ctx.pack(), other.value, "topic names the other kind")
    foreign = "sm" if ctx.kind is Kind.AIR else "pm25"
    _, ts, _, _ = ctx.first
    return Malformed(ctx.topic(), ctx.pack(((foreign, ts, 12.0, None),)), ctx.kind.value, f"{foreign} reported")


def _payload_too_large(ctx: MalformedContext) -> Malformed:
    _, ts, value, _ = ctx.first
    n = ctx.max_payload_bytes // 20 + 10
    quantity = ctx.first[0]
    records = [{"n": quantity, "t": i, "v": value} for i in range(n)]
    body = json.dumps([{"bn": f"urn:dev:livinglab:{ctx.sensor_id}:", "bt": int(ts)}, *records], separators=(",", ":"))
    return Malformed(ctx.topic(), body.encode(), ctx.kind.value, f"{len(body)} bytes")


def _invalid_utf8(ctx: MalformedContext) -> Malformed:
    text = ctx.pack().decode()
    payload = text.replace("urn:dev:livinglab:", "urn:dev:livinglab:\udcff", 1).encode("utf-8", "surrogateescape")
    return Malformed(ctx.topic(), payload, ctx.kind.value, "a lone 0xff byte in the base name")


def _non_finite_value(ctx: MalformedContext) -> Malformed:
    quantity, ts, _, _ = ctx.first
    token = ("NaN", "Infinity", "-Infinity", '"NaN"', '"inf"')[_variant(ctx, 5)]
    body = f'[{{"bn":"urn:dev:livinglab:{ctx.sensor_id}:","bt":{int(ts)}}},{{"n":"{quantity}","v":{token}}}]'
    return Malformed(ctx.topic(), body.encode(), ctx.kind.value, f"value {token}")


def _invalid_json(ctx: MalformedContext) -> Malformed:
    body = ctx.pack()
    if _variant(ctx, 2) == 0:
        return Malformed(ctx.topic(), body[: len(body) // 2], ctx.kind.value, "truncated")
    return Malformed(ctx.topic(), body.replace(b"},{", b"},,{", 1), ctx.kind.value, "two commas")


def _duplicate_key(ctx: MalformedContext) -> Malformed:
    quantity, ts, value, _ = ctx.first
    body = f'{{"ts":"{iso_time(ts, ctx.offset_h)}","{quantity}":{value!r},"{quantity}":{value!r}}}'
    return Malformed(ctx.topic(), body.encode(), ctx.kind.value, f"{quantity} twice in one object")


def _invalid_shape(ctx: MalformedContext) -> Malformed:
    quantity, ts, value, _ = ctx.first
    naive = iso_time(ts, 0).removesuffix("+00:00")
    bodies = (
        (f'{{"ts":"{naive}","{quantity}":{value!r}}}', "ts without a UTC offset"),
        (f'{{"{quantity}":{value!r}}}', "no ts"),
        ('"reading"', "a JSON string"),
        (f'[{{"bn":"urn:dev:livinglab:{ctx.sensor_id}:","bt":{int(ts)}}},{{"n":"{quantity}"}}]', "record without v"),
    )
    body, detail = bodies[_variant(ctx, len(bodies))]
    return Malformed(ctx.topic(), body.encode(), ctx.kind.value, detail)


def _unknown_quantity(ctx: MalformedContext) -> Malformed:
    _, ts, _, _ = ctx.first
    name = ("pm1", "noise_db", "bicycles")[_variant(ctx, 3)]
    return Malformed(ctx.topic(), ctx.pack(((name, ts, 12.0, None),)), ctx.kind.value, f"quantity {name}")


def _bad_unit(ctx: MalformedContext) -> Malformed:
    _, ts, _, _ = ctx.first
    record: Record = ("pm25", ts, 0.04, "ppm") if ctx.kind is Kind.AIR else ("speed", ts, 30.0, "mph")
    return Malformed(ctx.topic(), ctx.pack((record,)), ctx.kind.value, f"{record[0]} in {record[3]}")


def _out_of_range(ctx: MalformedContext) -> Malformed:
    _, ts, _, _ = ctx.first
    record: Record = ("pm25", ts, 2500.0, None) if ctx.kind is Kind.AIR else ("kr", ts, -3.0, None)
    quantity = QUANTITIES[record[0]]
    detail = f"{record[0]}={record[2]:g} outside [{quantity.min_value:g}, {quantity.max_value:g}]"
    return Malformed(ctx.topic(), ctx.pack((record,)), ctx.kind.value, detail)


def _timestamp_in_future(ctx: MalformedContext) -> Malformed:
    quantity, ts, value, unit = ctx.first
    ahead = ts + 400 * 86400
    return Malformed(ctx.topic(), ctx.pack(((quantity, ahead, value, unit),)), ctx.kind.value, "clock 400 days ahead")


def _timestamp_too_old(ctx: MalformedContext) -> Malformed:
    quantity, ts, value, unit = ctx.first
    old = ts - ctx.max_lateness_s - 3 * 86400
    return Malformed(ctx.topic(), ctx.pack(((quantity, old, value, unit),)), ctx.kind.value, "3 days past lateness")


def unknown_sensor(ctx: MalformedContext) -> Malformed:
    """A well-formed message from a device nobody registered."""
    ghost = f"ghost-{int(ctx.rng.integers(10_000)):04d}"
    body = simple_payload(tuple((q, ts, v, None) for q, ts, v, u in ctx.records if u is None) or (ctx.first,), 0)
    return Malformed(ctx.topic(sensor_id=ghost), body, ctx.kind.value, f"sensor {ghost}")


BUILDERS: Mapping[RejectionReason, Callable[[MalformedContext], Malformed]] = {
    RejectionReason.TOPIC_INVALID: _topic_invalid,
    RejectionReason.KIND_MISMATCH: _kind_mismatch,
    RejectionReason.PAYLOAD_TOO_LARGE: _payload_too_large,
    RejectionReason.INVALID_UTF8: _invalid_utf8,
    RejectionReason.NON_FINITE_VALUE: _non_finite_value,
    RejectionReason.INVALID_JSON: _invalid_json,
    RejectionReason.DUPLICATE_KEY: _duplicate_key,
    RejectionReason.INVALID_SHAPE: _invalid_shape,
    RejectionReason.UNKNOWN_QUANTITY: _unknown_quantity,
    RejectionReason.BAD_UNIT: _bad_unit,
    RejectionReason.OUT_OF_RANGE: _out_of_range,
    RejectionReason.TIMESTAMP_IN_FUTURE: _timestamp_in_future,
    RejectionReason.TIMESTAMP_TOO_OLD: _timestamp_too_old,
}
assert set(BUILDERS) == set(MALFORMED_REASONS)


def build_malformed(reason: RejectionReason, ctx: MalformedContext) -> Malformed:
    """A message that the platform must reject with `reason`."""
    return BUILDERS[reason](ctx)
