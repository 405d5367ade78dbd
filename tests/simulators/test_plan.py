"""The message plan: deterministic for a seed, the same however it is chunked, faults in the right order."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from livinglab.domain import IDENTIFIER_RE, QUANTITIES, RejectionReason
from livinglab.errors import ConfigurationError
from simulators.devices import DAY_S
from simulators.faults import MALFORMED_REASONS, FaultRates
from simulators.messages import Message, Omission, PlanItem
from simulators.plan import Period, Planner, PlanOptions
from simulators.scenario import Scenario, load_scenario

START = datetime(2026, 11, 20, 5, 30, tzinfo=UTC).timestamp()
FAULTY = FaultRates.parse("malformed=0.02,duplicate=0.02,conflicting_duplicate=0.02,late=0.02,unknown_sensor=0.01")


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario("demo")


def _messages(items: list[PlanItem]) -> list[tuple[str, bytes]]:
    return [(i.topic, i.payload) for i in items if isinstance(i, Message)]


def _plan(scenario: Scenario, seed: int, period: Period, **kwargs: object) -> list[PlanItem]:
    return list(Planner(scenario, seed, PlanOptions(rates=FAULTY)).items(period, **kwargs))  # type: ignore[arg-type]


def test_same_seed_same_messages_different_seed_different(demo: Scenario) -> None:
    period = Period(START, START + 6 * 3600)
    first, again, other = (_messages(_plan(demo, seed, period)) for seed in (11, 11, 12))
    assert first == again
    assert len(first) > 1000
    assert first != other
    differing = sum(a != b for a, b in zip(first, other, strict=False))
    assert differing > len(first) / 2


def test_chunks_and_orders_do_not_change_the_messages(demo: Scenario) -> None:
    period = Period(START, START + 0.8 * DAY_S)
    whole = _plan(demo, 3, period, chunk_s=DAY_S)
    hourly = _plan(demo, 3, period, chunk_s=3600)
    assert _messages(whole) == _messages(hourly)
    by_sensor = list(Planner(demo, 3, PlanOptions(rates=FAULTY)).items_by_sensor(period))
    assert Counter(_messages(by_sensor)) == Counter(_messages(whole))


def test_consecutive_periods_add_up_to_the_whole(demo: Scenario) -> None:
    middle = START + 7 * 3600 + 17
    planner = Planner(demo, 5, PlanOptions(rates=FAULTY))
    parts = list(planner.items(Period(START, middle))) + list(planner.items(Period(middle, START + DAY_S)))
    assert Counter(_messages(parts)) == Counter(_messages(list(planner.items(Period(START, START + DAY_S)))))


def test_items_come_in_publishing_order_and_derived_messages_follow_their_source(demo: Scenario) -> None:
    items = _plan(demo, 1, Period(START, START + 12 * 3600))
    due = [i.publish_at for i in items]
    assert due == sorted(due)
    sent_values: dict[tuple[str, str, int], float] = {}
    conflicts = 0
    for item in items:
        if not isinstance(item, Message) or not item.readings or item.sensor_id is None:
            continue
        if item.reason is RejectionReason.CONFLICTING_DUPLICATE:
            conflicts += 1
            (reading,) = item.readings
            original = sent_values[(item.sensor_id, reading.quantity, reading.ts_us)]  # already sent
            assert original != reading.value
            continue
        for reading in item.readings:
            sent_values.setdefault((item.sensor_id, reading.quantity, reading.ts_us), reading.value)
    assert conflicts > 10


def test_every_reading_is_in_the_period_and_counts_are_due_when_their_interval_ends(demo: Scenario) -> None:
    period = Period(START, START + 3 * 3600)
    planner = Planner(demo, 1, PlanOptions())
    for item in planner.items(period):
        assert isinstance(item, Message)
        assert item.reason is None
        assert not item.faults
        sensor = demo.sensor(item.sensor_id or "")
        (ts_us,) = {r.ts_us for r in item.readings}
        assert period.start_s <= ts_us / 1e6 < (period.end_s or 0)
        is_count = QUANTITIES[sensor.model.reported[0]].is_count
        assert item.publish_at == ts_us / 1e6 + (sensor.spec.interval_s if is_count else 0)
        assert {r.quantity for r in item.readings} == set(sensor.model.reported)


def test_malformed_reasons_are_taken_in_turn(demo: Scenario) -> None:
    rates = FaultRates.parse("off,malformed=0.05")
    items = list(Planner(demo, 2, PlanOptions(rates=rates)).items(Period(START, START + DAY_S)))
    reasons = Counter(i.reason for i in items if isinstance(i, Message) and i.reason is not None)
    assert set(reasons) == set(MALFORMED_REASONS)
    assert max(reasons.values()) - min(reasons.values()) <= len(demo.sensors)
    assert not any(isinstance(i, Omission) for i in items)


def test_malformed_payloads_have_the_promised_defect(demo: Scenario) -> None:
    rates = FaultRates.parse("off,malformed=0.05")
    items = list(Planner(demo, 2, PlanOptions(rates=rates)).items(Period(START, START + DAY_S)))
    for item in items:
        if not isinstance(item, Message) or item.reason is None:
            continue
        if item.reason is RejectionReason.PAYLOAD_TOO_LARGE:
            assert len(item.payload) > 256 * 1024
            continue
        assert len(item.payload) <= 256 * 1024
        if item.reason is RejectionReason.INVALID_UTF8:
            with pytest.raises(UnicodeDecodeError):
                item.payload.decode("utf-8")
            continue
        text = item.payload.decode("utf-8")
        if item.reason is RejectionReason.INVALID_JSON:
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        document = json.loads(text)  # NaN and Infinity tokens parse in Python
        if item.reason is RejectionReason.NON_FINITE_VALUE:
            values = [r.get("v") for r in document if isinstance(r, dict) and "v" in r]
            assert any(str(v).lower().lstrip("-") in ("nan", "inf", "infinity") for v in values)
        if item.reason is RejectionReason.TOPIC_INVALID:
            _, _, city, kind, sensor_id = item.topic.split("/")
            assert not (IDENTIFIER_RE.match(city) and IDENTIFIER_RE.match(sensor_id) and kind in ("air", "traffic"))


def test_fault_rates_parse() -> None:
    assert FaultRates.parse("off") == FaultRates.off()
    assert FaultRates.parse("default") == FaultRates()
    rates = FaultRates.parse("off, gap=0.2, clock-skew=0.5")
    assert (rates.gap, rates.clock_skew, rates.duplicate) == (0.2, 0.5, 0.0)
    assert FaultRates.parse("duplicate=0.1").gap == FaultRates().gap
    for bad in ("gap", "gap=2", "nonsense=0.1", "gap=x"):
        with pytest.raises(ConfigurationError, match="faults"):
            FaultRates.parse(bad)
