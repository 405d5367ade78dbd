"""Simulated LoRaWAN devices: uplinks shaped like each network server's, decoded by the platform's own decoder to
exactly the readings the plan says they carry; DevEUIs and field maps in the registry the simulator prints."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from ingest.rows import Limits, RowBuffer
from ingest.uplink_topics import DEFAULT_FILTERS, UplinkSource, filter_matches
from ingest.uplinks import Uplink, decode_uplink, parse_uplink
from livinglab.domain import QUANTITIES, Kind
from livinglab.field_maps import compile_field_map
from livinglab.sensor_files import parse_sensors
from livinglab.storage.registry import RegistryEntry
from simulators.command import registry_document
from simulators.faults import FaultRates
from simulators.lorawan import Network, lorawan_scenario, rfc3339
from simulators.messages import Message
from simulators.plan import Period, Planner, PlanOptions
from tests.support.simulation import city

START = datetime(2026, 11, 20, 5, 0, tzinfo=UTC).timestamp()
FAULTY = FaultRates.parse("off,no_codec=0.05,unknown_dev_eui=0.05,extra_members=0.3,fcnt_gap=0.05,late=0.02")


def _decoded(message: Message, network: Network, entry: RegistryEntry) -> list[tuple[str, int, float]]:
    uplink = parse_uplink(message.payload, UplinkSource(network), Limits())
    assert isinstance(uplink, Uplink), uplink
    rows = RowBuffer()
    rejection, ignored = decode_uplink(uplink, entry, rows=rows, msg=0, received_at_s=START, limits=Limits())
    assert rejection is None, rejection
    assert ignored == message.ignored
    names = {q.code: q.name for q in QUANTITIES.values()}
    return [
        (names[code], round(ts * 1e6), value * scale + offset)
        for code, ts, value, scale, offset in zip(rows.code, rows.ts, rows.value, rows.scale, rows.offset, strict=True)
    ]


@pytest.mark.parametrize("network", ["chirpstack", "tts"])
def test_uplinks_decode_to_the_planned_readings(network: Network) -> None:
    scenario = lorawan_scenario(city(), network)
    entries = {
        s.sensor_id: RegistryEntry(
            i,
            s.spec.city,
            s.kind,
            s.spec.interval_s,
            s.sensor_id,
            s.spec.dev_eui,
            compile_field_map(s.spec.field_map, s.kind),
        )
        for i, s in enumerate(scenario.sensors)
    }
    items = list(Planner(scenario, 7, PlanOptions(rates=FAULTY, network=network)).items(Period(START, START + 7200)))
    messages = [m for m in items if isinstance(m, Message)]
    source = UplinkSource(network)
    seen: Counter[str] = Counter()
    frames: dict[str, list[int]] = {}
    for message in messages:
        assert filter_matches(DEFAULT_FILTERS[source], message.topic), message.topic
        assert 700 <= len(message.payload) <= 1500  # an uplink of either server is about a kilobyte
        if message.reason is None:
            assert message.sensor_id is not None
            decoded = _decoded(message, network, entries[message.sensor_id])
            assert decoded == [(r.quantity, r.ts_us, pytest.approx(r.value)) for r in message.readings]
            seen["decoded"] += 1
            seen["extra"] += bool(message.ignored)
        else:
            seen[message.reason.value] += 1
        if message.fcnt is not None and message.sensor_id is not None:
            frames.setdefault(message.sensor_id, []).append(message.fcnt)
    assert seen["decoded"] > 300
    assert seen["extra"] > 50
    assert seen["undecoded_payload"] > 0
    assert seen["unknown_sensor"] > 0
    for counters in frames.values():  # one frame per reading time; the lost ones leave gaps
        assert len(set(counters)) < max(counters) - min(counters) + 1


def test_counts_and_late_uplinks_carry_their_own_time() -> None:
    scenario = lorawan_scenario(city(), "chirpstack")
    items = Planner(scenario, 3, PlanOptions(network="chirpstack")).items(Period(START, START + 1800))
    for message in (m for m in items if isinstance(m, Message)):
        event = orjson.loads(message.payload)
        kind = scenario.sensor(message.sensor_id or "").kind
        assert event["time"] == rfc3339(message.publish_at, zulu=False)
        assert ("ts" in event["object"]) == (kind is Kind.TRAFFIC)  # counts are stamped with their interval's start


def test_the_printed_registry_has_dev_euis_and_field_maps() -> None:
    scenario = lorawan_scenario(city(), "tts")
    for fmt in ("yaml", "csv", "json"):
        specs = parse_sensors(registry_document(scenario, fmt), fmt="yaml" if fmt == "json" else fmt)
        assert {s.sensor_id: s.dev_eui for s in specs} == {s.sensor_id: s.spec.dev_eui for s in scenario.sensors}
        assert len({s.dev_eui for s in specs}) == len(specs)
        reference = next(s for s in specs if s.sensor_id == "aq-ref-1")
        assert reference.field_map is not None
        assert reference.field_map["no2"].unit == "ppb"  # type: ignore[union-attr]
    assert lorawan_scenario(city(), None) == city()
