"""The fault scenarios' oracle: what a publisher that numbers its readings sent, what reached the database, and the
rows of the tables `pytest -m faults` prints at the end of the run.

Every scenario publishes numbered readings with `LoadPublisher` (reading i of sensor s has its own key and value),
breaks something, heals it, and hands the publisher to `FaultTable.check`, which waits for the database to settle and
counts: readings published, acknowledged by the broker (PUBACK to the publisher), stored, missing (acknowledged and
not stored, or stored with another value) and duplicated (a key stored twice, or counted as accepted twice).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import psycopg

from tests.support.ingest import LoadPublisher

SENSORS = ["aq-1", "aq-2", "aq-3", "aq-4"]

_STORED = (
    "SELECT s.sensor_id, round(extract(epoch FROM r.ts)::numeric, 2)::float8, r.value"
    " FROM readings r JOIN sensors s USING (sensor_key) WHERE s.sensor_id = ANY(%s)"
)
_COUNTS = (
    "SELECT (SELECT count(*) FROM readings), (SELECT coalesce(sum(accepted), 0) FROM ingest_counters),"
    " (SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY sensor_key, quantity, ts HAVING count(*) > 1) d)"
)


def base_ts() -> float:
    """An hour ago, on a minute boundary: the readings' clock (within the accepted lateness, never in the future)."""
    return math.floor(time.time() / 60) * 60 - 3600


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row of the table."""

    scenario: str
    published: int
    acknowledged: int
    stored: int
    missing: int
    duplicated: int
    note: str = ""


def count_outcome(url: str, load: LoadPublisher, scenario: str, note: str = "") -> Outcome:
    """What reached the database of what `load` published (see the module docstring)."""
    expected = load.expected_values()
    with psycopg.connect(url, autocommit=True) as conn:
        stored = {(s, ts): v for s, ts, v in conn.execute(_STORED, (load.sensors,))}
        rows, accepted, doubled = conn.execute(_COUNTS).fetchone() or (0, 0, 0)
    missing = sum(1 for key, value in expected.items() if stored.get(key) != value)
    duplicated = int(doubled) + max(0, int(accepted) - int(rows))
    return Outcome(scenario, load.sent, len(expected), len(stored), missing, duplicated, note)


def wait_for_outcome(
    url: str, load: LoadPublisher, scenario: str, *, expect_loss: bool = False, timeout_s: float = 90.0, note: str = ""
) -> Outcome:
    """Wait until every acknowledged reading is stored (or, when loss is expected, until storing stops), then count."""
    deadline = time.monotonic() + timeout_s
    previous, steady_since = -1, time.monotonic()
    while True:
        outcome = count_outcome(url, load, scenario, note)
        now = time.monotonic()
        if outcome.stored != previous:
            previous, steady_since = outcome.stored, now
        if outcome.missing == 0 and not expect_loss:
            return outcome
        if (expect_loss and now - steady_since > 5.0) or now > deadline:
            return outcome
        time.sleep(0.5)


@dataclass(frozen=True, slots=True)
class Recovery:
    """One row of the second table: a fault aimed at the processors or the live stream, how long it took to notice
    (`detected_s`) and to catch up once healed (`caught_up_s`), and what was checked afterwards: the processors'
    results against a clean run over the same readings (`differing` rows), or the events every SSE client received
    against the events table (`differing` missing, `duplicated` repeated or out of order)."""

    scenario: str
    detected_s: float
    caught_up_s: float
    checked: str
    differing: int
    duplicated: int
    note: str = ""


class FaultTable:
    """The rows recorded during the session, printed by `pytest_terminal_summary`."""

    def __init__(self) -> None:
        self.rows: list[Outcome] = []
        self.recoveries: list[Recovery] = []

    def record_recovery(self, recovery: Recovery) -> Recovery:
        """Record a processor or stream row, and assert its promise: nothing differs from the clean run, nothing is
        missing or repeated."""
        self.recoveries.append(recovery)
        assert recovery.differing == 0, recovery
        assert recovery.duplicated == 0, recovery
        return recovery

    def record(self, outcome: Outcome) -> Outcome:
        self.rows.append(outcome)
        return outcome

    def check(
        self, url: str, load: LoadPublisher, scenario: str, *, note: str = "", expect_loss: bool = False
    ) -> Outcome:
        """Count, record, and assert the promise: nothing missing or doubled (or, for a control run, loss seen)."""
        outcome = self.record(wait_for_outcome(url, load, scenario, expect_loss=expect_loss, note=note))
        assert outcome.acknowledged > 100, f"the load did not get going: {outcome}"
        if expect_loss:
            assert outcome.missing > 0, f"the control run lost nothing, so the oracle proves nothing: {outcome}"
        else:
            assert outcome.missing == 0, outcome
        assert outcome.duplicated == 0, outcome
        return outcome

    def render(self) -> list[str]:
        header = ("scenario", "published", "acked by broker", "stored", "missing", "duplicated", "notes")
        cells = [header] + [
            (r.scenario, *(str(n) for n in (r.published, r.acknowledged, r.stored, r.missing, r.duplicated)), r.note)
            for r in self.rows
        ]
        return _table(cells)

    def render_recoveries(self) -> list[str]:
        header = ("scenario", "detected", "caught up", "checked", "differing/missing", "duplicated", "notes")
        cells = [header] + [
            (
                r.scenario,
                f"{r.detected_s:.1f} s",
                f"{r.caught_up_s:.1f} s",
                r.checked,
                str(r.differing),
                str(r.duplicated),
                r.note,
            )
            for r in self.recoveries
        ]
        return _table(cells)


def _table(cells: list[tuple[str, ...]]) -> list[str]:
    """The first column left-aligned, the middle ones right-aligned, the notes as they are."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row: tuple[str, ...]) -> str:
        first = row[0].ljust(widths[0])
        numbers = [v.rjust(w) for v, w in zip(row[1:-1], widths[1:-1], strict=True)]
        return "  ".join([first, *numbers, row[-1]]).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    return [line(cells[0]), rule, *(line(c) for c in cells[1:])]
