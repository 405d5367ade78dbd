"""The message plan: every message a scenario sends over a period, with its faults, in publishing order.

Per sensor and UTC day the plan draws the day's readings (`simulators.devices`) and its faults from streams keyed by
(seed, sensor, day), then materialises the messages of the time range asked for. The same seed therefore gives the
same messages whether a period is planned at once, hour by hour, or split between publisher processes.

Publishing order is by the simulated time a message is due (`publish_at`): a reading is due when it is measured
(air) or when its counting interval ends (traffic counts); faults move that time (late, overtaken, buffered in a
burst) or add messages after it (duplicates, conflicting values, malformed and unknown-sensor messages). A message
derived from another is always due after it, so a conflicting value always reaches the platform second.

Sensors that send through a LoRaWAN network server (`simulators.lorawan`) publish one uplink per reading time, with
faults of their own drawn from a stream of their own: uplinks without codec output, lost uplinks (a gap in the frame
counter), codec output with members that are not readings, and uplinks from DevEUIs nobody registered. Their
buffered readings are sent as separate uplinks, never packed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from livinglab.domain import QUANTITIES, RejectionReason
from simulators.devices import DAY_S, simulate_day
from simulators.faults import MALFORMED_REASONS, FaultRates, MalformedContext, build_malformed, unknown_sensor
from simulators.lorawan import (
    EXTRA_MEMBERS,
    Network,
    codec_output,
    dev_eui_of,
    frame_counter,
    lorawan_scenario,
    network_of,
    uplink_payload,
    uplink_topic,
)
from simulators.messages import (
    FaultNote,
    Message,
    Omission,
    PlanItem,
    Record,
    canonical_readings,
    senml_payload,
    simple_payload,
    topic_for,
)
from simulators.randomness import Purpose, block_rng
from simulators.scenario import Scenario, SimSensor


@dataclass(frozen=True, slots=True)
class Period:
    """Reading timestamps in `[start_s, end_s)`; `end_s` None runs on (real time)."""

    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        if self.end_s is not None and self.end_s < self.start_s:
            raise ValueError("a period ends after it starts")


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """Where messages go and which faults they carry; limits the malformed messages are built against."""

    prefix: str = "livinglab/v1"
    rates: FaultRates = field(default_factory=FaultRates.off)
    max_payload_bytes: int = 256 * 1024
    max_lateness_s: float = 7 * 86400.0
    #: Send every sensor's readings through this LoRaWAN network server (None: each as its model says).
    network: Network | None = None


@dataclass(frozen=True, slots=True)
class _Draws:
    """Every random fault decision of one sensor-day, drawn up front so a part of the day gets the same ones."""

    lost: npt.NDArray[np.bool_]
    outage: npt.NDArray[np.bool_]
    skew_s: npt.NDArray[np.int64]
    delay_s: npt.NDArray[np.float64]
    late: npt.NDArray[np.bool_]
    overtaken: npt.NDArray[np.bool_]
    burst: npt.NDArray[np.bool_]
    burst_packed: bool
    duplicate: npt.NDArray[np.bool_]
    duplicate_delay_s: npt.NDArray[np.float64]
    conflict: npt.NDArray[np.bool_]
    conflict_delay_s: npt.NDArray[np.float64]
    malformed_reason: npt.NDArray[np.int64]  # -1: none
    unknown: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _UplinkDraws:
    """The LoRaWAN faults of one sensor-day (a stream of their own, so direct devices draw as they always did)."""

    no_codec: npt.NDArray[np.bool_]
    lost: npt.NDArray[np.bool_]
    extra: npt.NDArray[np.bool_]
    unknown: npt.NDArray[np.bool_]


def _draw_uplinks(rng: np.random.Generator, rates: FaultRates, n: int) -> _UplinkDraws:
    no_codec = rng.random(n) < rates.no_codec
    lost = rng.random(n) < rates.fcnt_gap
    extra = rng.random(n) < rates.extra_members
    unknown = rng.random(n) < rates.unknown_dev_eui
    return _UplinkDraws(no_codec & ~lost, lost, extra, unknown)


def _span(rng: np.random.Generator, rate: float, n: int, low: int, high: int) -> npt.NDArray[np.bool_]:
    """With probability `rate`, a run of `low`..`high` entries at a random place in the day."""
    mask = np.zeros(n, dtype=np.bool_)
    happens = rng.random() < rate
    start = int(rng.integers(max(1, n)))
    length = int(rng.integers(low, max(low + 1, high)))
    if happens and n:
        mask[start : start + length] = True
    return mask


def _draw(rng: np.random.Generator, rates: FaultRates, n: int, interval_s: int) -> _Draws:
    per_hour = max(1, 3600 // interval_s)
    outage = _span(rng, rates.outage, n, max(1, 600 // interval_s), max(2, 3 * 3600 // interval_s))
    burst = _span(rng, rates.burst, n, 10, 60)
    burst_packed = bool(rng.random() < 0.5)
    skewed = _span(rng, rates.clock_skew, n, per_hour, 6 * per_hour)
    skew = int(rng.integers(5, 61)) * (1 if rng.random() < 0.5 else -1)
    if skew % interval_s == 0:  # a skew of whole intervals would land on the next reading's key
        skew += 1
    gap = rng.random(n) < rates.gap
    late = rng.random(n) < rates.late
    delay = rng.uniform(300.0, 7200.0, n)
    overtaken = rng.random(n) < rates.out_of_order
    duplicate = rng.random(n) < rates.duplicate
    duplicate_delay = rng.uniform(1.0, 3.0 * interval_s, n)
    conflict = rng.random(n) < rates.conflicting_duplicate
    conflict_delay = rng.uniform(60.0, 1800.0, n)
    malformed = rng.random(n) < rates.malformed
    first_reason = int(rng.integers(len(MALFORMED_REASONS)))
    reason = np.where(malformed, (first_reason + np.cumsum(malformed) - 1) % len(MALFORMED_REASONS), -1)
    unknown = rng.random(n) < rates.unknown_sensor
    return _Draws(
        lost=(gap | outage) & ~burst,
        outage=outage & ~burst,
        skew_s=np.where(skewed, skew, 0).astype(np.int64),
        delay_s=delay,
        late=late & ~burst,
        overtaken=overtaken & ~burst & ~late,
        burst=burst,
        burst_packed=burst_packed,
        duplicate=duplicate,
        duplicate_delay_s=duplicate_delay,
        conflict=conflict,
        conflict_delay_s=conflict_delay,
        malformed_reason=reason.astype(np.int64),
        unknown=unknown,
    )


class Planner:
    """Plans the messages of a scenario; deterministic for its seed."""

    def __init__(self, scenario: Scenario, seed: int, options: PlanOptions | None = None) -> None:
        self.options = options or PlanOptions()
        self.scenario = lorawan_scenario(scenario, self.options.network)
        self.seed = seed
        self._position = {s.sensor_id: i for i, s in enumerate(scenario.sensors)}

    # -- one sensor-day ---------------------------------------------------------------------------------------

    def sensor_items(self, sensor: SimSensor, day: int, lo: float, hi: float, period: Period) -> list[PlanItem]:
        """The items of one sensor and UTC day whose reading time falls in `[lo, hi)`, in publishing order.

        A burst sent as one pack is planned with its first reading in the period, whole (its readings in the
        period), so planning a period in chunks gives the same messages as planning it at once.
        """
        sensor = self.scenario.sensor(sensor.sensor_id)  # with its DevEUI when it is a LoRaWAN sensor
        block = simulate_day(sensor, self.scenario, self.seed, day)
        n = len(block)
        interval = sensor.spec.interval_s
        draws = _draw(block_rng(self.seed, sensor.stream, day, Purpose.FAULTS), self.options.rates, n, interval)
        network = network_of(sensor, self.options.network)
        uplinks = None
        if network is not None:
            uplinks = _draw_uplinks(block_rng(self.seed, sensor.stream, day, Purpose.LORAWAN), self.options.rates, n)
        ts = block.ts_s
        is_count = QUANTITIES[sensor.model.reported[0]].is_count
        publish = ts.astype(np.float64) + (interval if is_count else 0.0)
        publish = publish + np.where(draws.late, draws.delay_s, 0.0) + np.where(draws.overtaken, interval + 0.001, 0.0)
        if draws.burst.any():
            publish[draws.burst] = publish[np.flatnonzero(draws.burst)[-1]]
        wanted = np.flatnonzero((ts >= lo) & (ts < hi))
        if wanted.size == 0:
            return []
        columns = {name: values.tolist() for name, values in block.values.items()}
        units = {name: sensor.model.units.get(name) for name in sensor.model.reported}
        position = self._position.get(sensor.sensor_id, 0)
        items: list[PlanItem] = []

        def records_at(i: int) -> tuple[Record, ...]:
            sent_ts = float(ts[i] + draws.skew_s[i])
            return tuple((name, sent_ts, columns[name][i], units[name]) for name in sensor.model.reported)

        in_period = (ts >= period.start_s) & (ts < (period.end_s if period.end_s is not None else math.inf))
        burst_indices = [int(i) for i in np.flatnonzero(draws.burst & in_period)]
        for i in (int(i) for i in wanted):
            order = (day, position, i)
            lost_uplink = uplinks is not None and uplinks.lost[i] and not draws.burst[i]
            if draws.lost[i] or lost_uplink:
                fault = "outage" if draws.outage[i] else "gap" if draws.lost[i] else "fcnt_gap"
                first = draws.outage[i] and (i == 0 or not draws.outage[i - 1])
                detail = f"{int(draws.outage.sum())} readings" if first else ""
                items.append(
                    Omission(float(publish[i]), (*order, 0), sensor.sensor_id, float(ts[i]), FaultNote(fault, detail))
                )
                continue
            if draws.burst[i] and draws.burst_packed and network is None:
                if i != burst_indices[0]:
                    continue
                records = tuple(r for j in burst_indices for r in records_at(j))
                notes: tuple[FaultNote, ...] = (FaultNote("burst", f"{len(burst_indices)} readings in one pack"),)
            else:
                records = records_at(i)
                notes = self._notes(draws, i, len(burst_indices))
            if network is not None and uplinks is not None:
                fcnt = frame_counter(float(ts[i]), interval)
                message = self._uplink(network, sensor, float(publish[i]), (*order, 0), records, notes, fcnt,
                                       codec=not uplinks.no_codec[i], extra=bool(uplinks.extra[i]))  # fmt: skip
            else:
                message = self._message(sensor, float(publish[i]), (*order, 0), records, notes)
            items.append(message)
            items.extend(self._derived(sensor, day, i, message, records, draws))
            if network is not None and uplinks is not None and uplinks.unknown[i]:
                items.append(self._stranger(network, sensor, message, records))
        items.sort(key=lambda item: item.sort_key())
        return items

    @staticmethod
    def _notes(draws: _Draws, i: int, burst_size: int) -> tuple[FaultNote, ...]:
        notes: list[FaultNote] = []
        if draws.skew_s[i]:
            first = i == 0 or not draws.skew_s[i - 1]
            notes.append(FaultNote("clock_skew", f"clock {int(draws.skew_s[i]):+d} s" if first else ""))
        if draws.late[i]:
            notes.append(FaultNote("late", f"{draws.delay_s[i] / 60:.0f} min late"))
        if draws.overtaken[i]:
            notes.append(FaultNote("out_of_order", "overtaken by the next message"))
        if draws.burst[i]:
            first = i == 0 or not draws.burst[i - 1]
            notes.append(FaultNote("burst", f"{burst_size} buffered messages" if first else ""))
        return tuple(notes)

    def _message(
        self,
        sensor: SimSensor,
        publish_at: float,
        order: tuple[int, ...],
        records: tuple[Record, ...],
        notes: tuple[FaultNote, ...] = (),
        reason: RejectionReason | None = None,
    ) -> Message:
        spec = sensor.spec
        if sensor.model.payload == "json" and all(r[3] is None for r in records):
            payload = simple_payload(records, self.scenario.timezone_offset_h)
        else:
            payload = senml_payload(spec.sensor_id, records)
        return Message(
            publish_at=publish_at,
            order=order,
            topic=topic_for(self.options.prefix, spec.city, spec.kind.value, spec.sensor_id),
            payload=payload,
            kind=spec.kind.value,
            sensor_id=spec.sensor_id,
            readings=canonical_readings(records),
            reason=reason,
            faults=notes,
        )

    def _uplink(
        self,
        network: Network,
        sensor: SimSensor,
        publish_at: float,
        order: tuple[int, ...],
        records: tuple[Record, ...],
        notes: tuple[FaultNote, ...],
        fcnt: int,
        *,
        codec: bool = True,
        extra: bool = False,
        reason: RejectionReason | None = None,
    ) -> Message:
        """A LoRaWAN sensor's uplink as its network server publishes it."""
        spec = sensor.spec
        assert spec.dev_eui is not None
        output = codec_output(records, publish_at, extra=extra) if codec else None
        if not codec:
            notes, reason = (*notes, FaultNote("no_codec", "no codec output")), RejectionReason.UNDECODED_PAYLOAD
        elif extra:
            notes = (*notes, FaultNote("extra_members", ", ".join(EXTRA_MEMBERS)))
        payload = uplink_payload(
            network, sensor_id=spec.sensor_id, dev_eui=spec.dev_eui, output=output, fcnt=fcnt, publish_at=publish_at
        )
        return Message(
            publish_at=publish_at,
            order=order,
            topic=uplink_topic(network, spec.sensor_id, spec.dev_eui),
            payload=payload,
            kind=spec.kind.value,
            sensor_id=spec.sensor_id,
            readings=canonical_readings(records) if codec else (),
            reason=reason,
            faults=notes,
            fcnt=fcnt,
            ignored=len(EXTRA_MEMBERS) if codec and extra else 0,
        )

    def _stranger(self, network: Network, sensor: SimSensor, parent: Message, records: tuple[Record, ...]) -> Message:
        """An uplink from a device nobody registered, right after `parent`."""
        ghost = f"{sensor.sensor_id}-ghost"
        dev_eui = dev_eui_of(ghost)
        at = parent.publish_at + 0.75
        payload = uplink_payload(
            network, sensor_id=ghost, dev_eui=dev_eui, output=codec_output(records, at, extra=False), fcnt=1,
            publish_at=at,
        )  # fmt: skip
        note = FaultNote("unknown_dev_eui", f"dev_eui {dev_eui}")
        kind = sensor.kind.value
        topic = uplink_topic(network, ghost, dev_eui)
        return self._raw(at, (*parent.order[:-1], 5), topic, payload, kind, RejectionReason.UNKNOWN_SENSOR, note)

    def _derived(
        self, sensor: SimSensor, day: int, i: int, parent: Message, records: tuple[Record, ...], draws: _Draws
    ) -> list[Message]:
        """Messages a fault adds after `parent`: a resend, a conflicting value, a malformed or unknown-sensor one."""
        out: list[Message] = []
        if not (draws.duplicate[i] or draws.conflict[i] or draws.malformed_reason[i] >= 0 or draws.unknown[i]):
            return out
        order = parent.order[:-1]
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, sensor.stream, day & 0xFFFFFFFF, Purpose.MALFORMED, i])
        if draws.duplicate[i]:
            copy = Message(
                parent.publish_at + float(draws.duplicate_delay_s[i]),
                (*order, 1),
                parent.topic,
                parent.payload,
                parent.kind,
                parent.sensor_id,
                parent.readings,
                parent.reason,
                faults=(FaultNote("duplicate", "sent twice"),),
                fcnt=parent.fcnt,
                ignored=parent.ignored,
            )
            out.append(copy)
        if draws.conflict[i] and parent.readings:
            record = records[int(rng.integers(len(records)))]
            changed = (record[0], record[1], _changed_value(record), record[3])
            note = FaultNote("conflicting_duplicate", f"{record[0]} {record[2]:g} -> {changed[2]:g}")
            at = parent.publish_at + float(draws.conflict_delay_s[i])
            reason = RejectionReason.CONFLICTING_DUPLICATE
            network = network_of(sensor, self.options.network)
            if network is not None and parent.fcnt is not None:
                # The network server's later delivery of the same frame, decoded differently (a changed codec).
                conflict = self._uplink(network, sensor, at, (*order, 2), (changed,), (note,), parent.fcnt,
                                        reason=reason)  # fmt: skip
            else:
                conflict = self._message(sensor, at, (*order, 2), (changed,), (note,), reason)
            out.append(conflict)
        if draws.malformed_reason[i] >= 0 or draws.unknown[i]:
            ctx = MalformedContext(
                prefix=self.options.prefix,
                city=sensor.spec.city,
                kind=sensor.kind,
                sensor_id=sensor.sensor_id,
                records=records,
                offset_h=self.scenario.timezone_offset_h,
                max_payload_bytes=self.options.max_payload_bytes,
                max_lateness_s=self.options.max_lateness_s,
                rng=rng,
            )
            if draws.malformed_reason[i] >= 0:
                reason = MALFORMED_REASONS[int(draws.malformed_reason[i])]
                bad = build_malformed(reason, ctx)
                note = FaultNote("malformed", f"{reason.value}: {bad.detail}")
                out.append(
                    self._raw(parent.publish_at + 0.25, (*order, 3), bad.topic, bad.payload, bad.kind, reason, note)
                )
            if draws.unknown[i]:
                ghost = unknown_sensor(ctx)
                note = FaultNote("unknown_sensor", ghost.detail)
                reason = RejectionReason.UNKNOWN_SENSOR
                out.append(
                    self._raw(
                        parent.publish_at + 0.5, (*order, 4), ghost.topic, ghost.payload, ghost.kind, reason, note
                    )
                )
        return out

    @staticmethod
    def _raw(
        publish_at: float,
        order: tuple[int, ...],
        topic: str,
        payload: bytes,
        kind: str,
        reason: RejectionReason,
        note: FaultNote,
    ) -> Message:
        return Message(publish_at, order, topic, payload, kind, None, (), reason, (note,))

    # -- whole periods ----------------------------------------------------------------------------------------

    def chunk_s(self) -> int:
        """How much simulated time is planned at once: a day for small cities, an hour for large ones."""
        return DAY_S if len(self.scenario.sensors) <= 200 else 3600

    def items(self, period: Period, *, chunk_s: int | None = None) -> Iterator[PlanItem]:
        """Every item of the period, across sensors, in publishing order (`publish_at`, then a fixed tie-break).

        Items are planned a chunk of reading time at a time; an item is never due before its reading time, so
        everything due before the next chunk starts can be released once the chunk is planned.
        """
        step = chunk_s or self.chunk_s()
        pending: list[tuple[float, tuple[int, ...], int, PlanItem]] = []
        counter = 0
        lo = float(period.start_s)
        while period.end_s is None or lo < period.end_s:
            hi = float((math.floor(lo / step) + 1) * step)
            if period.end_s is not None:
                hi = min(hi, period.end_s)
            day = int(lo // DAY_S)
            for sensor in self.scenario.sensors:
                for item in self.sensor_items(sensor, day, lo, hi, period):
                    heapq.heappush(pending, (item.publish_at, item.order, counter, item))
                    counter += 1
            while pending and pending[0][0] < hi:
                yield heapq.heappop(pending)[3]
            lo = hi
        while pending:
            yield heapq.heappop(pending)[3]

    def items_by_sensor(self, period: Period) -> Iterator[PlanItem]:
        """Every item of a finite period, day by day and sensor by sensor (each sensor's own order kept).

        For backfill and load, where nothing waits for a clock: memory holds one sensor-day at a time.
        """
        if period.end_s is None:
            raise ValueError("items_by_sensor needs a finite period")
        day = int(period.start_s // DAY_S)
        while day * DAY_S < period.end_s:
            lo = max(float(period.start_s), float(day * DAY_S))
            hi = min(float(period.end_s), float((day + 1) * DAY_S))
            for sensor in self.scenario.sensors:
                yield from self.sensor_items(sensor, day, lo, hi, period)
            day += 1


def _changed_value(record: Record) -> float:
    """A different value for the same reading that is still in range (so only the conflict rejects it)."""
    quantity, _, value, unit = record
    q = QUANTITIES[quantity]
    converter = q.units[unit] if unit is not None else None
    if q.is_count:
        candidates = [value + 3.0, value - 3.0]
    else:
        step = max(1.0, abs(value) * 0.1)
        candidates = [round(value + step, 3), round(value - step, 3)]
    for candidate in candidates:
        canonical = converter.to_canonical(candidate) if converter else candidate
        if q.min_value <= canonical <= q.max_value:
            return candidate
    return candidates[0]
