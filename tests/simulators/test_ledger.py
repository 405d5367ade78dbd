"""The ledger judges messages as CONTRACT.md section 1 says; fault accounting matches what the plan injected."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from livinglab.domain import RejectionReason
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.messages import FaultNote, Message, Omission, Reading
from simulators.plan import Period, Planner, PlanOptions
from simulators.scenario import load_scenario

T = 1_795_000_000


def _message(*readings: tuple[str, int, float], reason: RejectionReason | None = None) -> Message:
    rows = tuple(Reading(q, ts * 1_000_000, v) for q, ts, v in readings)
    return Message(0.0, (0,), "p/c/air/s1", b"{}", "air", "s1", rows, reason)


def test_first_value_stays_duplicates_count_and_conflicts_reject_the_whole_message() -> None:
    ledger = Ledger()
    ledger.record(_message(("pm25", T, 40.0), ("pm10", T, 60.0)))
    ledger.record(_message(("pm25", T, 40.0), ("pm10", T, 60.0)))  # exact resend
    ledger.record(_message(("pm25", T + 60, 41.0), ("pm25", T, 45.0), reason=RejectionReason.CONFLICTING_DUPLICATE))
    ledger.record(_message(("pm25", T + 120, 42.0)))
    ledger.record(Message(0.0, (0,), "p/c/air/x", b"\xff", "air", None, (), RejectionReason.INVALID_UTF8))
    series = ledger.series()
    assert series[("s1", "pm25")].ts_us.tolist() == [T * 1_000_000, (T + 120) * 1_000_000]
    assert series[("s1", "pm25")].value.tolist() == [40.0, 42.0]
    assert ledger.duplicates == 2
    assert ledger.rejections == Counter({"conflicting_duplicate": 1, "invalid_utf8": 1})
    assert ledger.readings_stored == 3
    assert ledger.surprises == 0


def test_a_conflict_the_plan_did_not_announce_is_a_surprise() -> None:
    ledger = Ledger()
    ledger.record(_message(("pm25", T, 40.0)))
    ledger.record(_message(("pm25", T, 41.0)))
    assert ledger.rejections == Counter({"conflicting_duplicate": 1})
    assert ledger.surprises == 1


def test_omissions_and_notes_are_counted_as_faults() -> None:
    ledger = Ledger()
    ledger.record(Omission(0.0, (0,), "s1", T, FaultNote("gap")))
    ledger.record(Omission(0.0, (0,), "s1", T, FaultNote("outage", "12 readings")))
    message = _message(("pm25", T, 1.0))
    message.faults = (FaultNote("late", "7 min late"), FaultNote("clock_skew", "clock +12 s"))
    ledger.record(message)
    assert ledger.faults == Counter({"gap": 1, "outage": 1, "late": 1, "clock_skew": 1})
    assert [f.type for f in ledger.log] == ["gap", "outage", "late", "clock_skew"]


def test_fault_accounting_matches_the_plan_and_counts_only_mode_agrees() -> None:
    scenario = load_scenario("demo")
    start = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    rates = FaultRates.parse("malformed=0.02,conflicting_duplicate=0.01,duplicate=0.01,unknown_sensor=0.01")
    items = list(Planner(scenario, 4, PlanOptions(rates=rates)).items(Period(start, start + 8 * 3600)))
    full, counts_only = Ledger(), Ledger(keep_readings=False)
    for item in items:
        full.record(item)
        counts_only.record(item)
    planned_faults = Counter(
        note.type for item in items for note in ((item.fault,) if isinstance(item, Omission) else item.faults)
    )
    planned_rejections = Counter(i.reason.value for i in items if isinstance(i, Message) and i.reason is not None)
    assert full.faults == planned_faults
    assert full.rejections == planned_rejections
    assert full.surprises == 0
    assert full.rejections["conflicting_duplicate"] == planned_faults["conflicting_duplicate"] > 0
    assert (
        sum(v for k, v in full.rejections.items() if k not in ("conflicting_duplicate", "unknown_sensor"))
        == (planned_faults["malformed"])
    )
    assert full.summary()["expected_rejections"] == counts_only.summary()["expected_rejections"]
    assert full.readings_stored == counts_only.readings_stored
    assert full.duplicates == counts_only.duplicates
    assert full.messages == sum(isinstance(i, Message) for i in items)
