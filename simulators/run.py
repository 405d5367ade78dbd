"""Running a simulation: real time, accelerated or backfill (see `simulators.load` for the load mode).

- real time: every message is published when it is due by the wall clock, from now on, until stopped;
- accelerated: a simulated clock runs `speed` times faster over a period that ends at or before now (the platform
  rejects readings from the future);
- backfill: the period's messages as fast as the broker acknowledges them (paced by the QoS 1 window).

`follow` continues a backfill or an accelerated run in real time from where its period ended, with nothing skipped
or sent twice; `livinglab up --simulate` backfills the last day that way so indices exist at once.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from livinglab.settings import MqttUrl
from simulators.devices import DAY_S
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.lorawan import Network
from simulators.messages import Message, PlanItem
from simulators.plan import Period, Planner, PlanOptions
from simulators.progress import Progress
from simulators.publisher import MqttPublisher, SimClock
from simulators.scenario import Scenario

log = logging.getLogger(__name__)

#: Readings older than this many seconds before the platform's maximum lateness are refused up front.
_LATENESS_MARGIN_S = 3600.0


class Mode(enum.StrEnum):
    REALTIME = "realtime"
    ACCELERATED = "accelerated"
    BACKFILL = "backfill"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a scenario (every mode but load)."""

    mode: Mode = Mode.REALTIME
    #: The period of accelerated and backfill runs (its end at or before now); real time starts now.
    period: Period | None = None
    speed: float = 60.0
    follow: bool = False
    seed: int = 1
    rates: FaultRates = field(default_factory=FaultRates.off)
    prefix: str = "livinglab/v1"
    qos: int = 1
    window: int = 1000
    client_id: str = "livinglab-simulator"
    max_payload_bytes: int = 256 * 1024
    max_lateness_s: float = 7 * 86400.0
    #: Keep every stored reading in the ledger (needed for ground truth).
    keep_readings: bool = False
    progress: bool = True
    #: Send every sensor's readings through this LoRaWAN network server's uplinks (None: as each model says).
    network: Network | None = None


def default_period(days: float, end_s: float | None = None) -> Period:
    """`days` ending at `end_s` (default: now, rounded down to the minute)."""
    end = end_s if end_s is not None else time.time() // 60 * 60
    return Period(end - days * DAY_S, end)


class Simulation:
    """One simulator run. `run()` blocks until the run ends or `stop()` is called, and returns the ledger."""

    def __init__(self, scenario: Scenario, mqtt_url: MqttUrl, options: RunOptions) -> None:
        self.scenario = scenario
        self.options = options
        self.url = mqtt_url
        # The fault log, like the readings, only matters for ground truth; a long real-time run keeps counts only.
        self.ledger = Ledger(keep_readings=options.keep_readings, keep_log=options.keep_readings)
        self.planner = Planner(
            scenario,
            options.seed,
            PlanOptions(
                prefix=options.prefix,
                rates=options.rates,
                max_payload_bytes=options.max_payload_bytes,
                max_lateness_s=options.max_lateness_s,
                network=options.network,
            ),
        )
        self._stop = threading.Event()
        self.elapsed_s = 0.0
        self.completed = False
        self._check()

    def _check(self) -> None:
        o = self.options
        if o.mode is Mode.LOAD:
            raise ValueError("the load mode runs through simulators.load")
        if o.mode is Mode.REALTIME:
            return
        if o.period is None or o.period.end_s is None:
            raise ValueError(f"{o.mode.value} needs a finite period")
        now = time.time()
        if o.period.end_s > now + 1:
            raise ValueError("the period must end at or before now: the platform rejects readings from the future")
        if o.period.start_s < now - o.max_lateness_s + _LATENESS_MARGIN_S:
            days = (o.max_lateness_s - _LATENESS_MARGIN_S) / DAY_S
            raise ValueError(f"the period must start within {days:.1f} days of now (the platform's maximum lateness)")

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> Ledger:
        publisher = MqttPublisher(self.url, self.options.client_id, qos=self.options.qos, window=self.options.window)
        publisher.connect()
        started = time.monotonic()
        try:
            end = self._run_period(publisher)
            if self.options.follow and not self._stop.is_set():
                log.info("continuing in real time")
                self._publish_all(publisher, self._realtime_items(end), SimClock(), None)
            self.completed = not self._stop.is_set()
        finally:
            if not publisher.flush(timeout_s=30):
                log.warning("%d messages were not acknowledged by the broker", publisher.outstanding)
            publisher.close()
            self.elapsed_s = time.monotonic() - started
        return self.ledger

    def _run_period(self, publisher: MqttPublisher) -> float:
        """Publish the mode's period; returns where real time should continue."""
        o = self.options
        if o.mode is Mode.REALTIME:
            start = time.time()
            self._publish_all(publisher, self._realtime_items(start), SimClock(), None)
            return start
        period = o.period
        assert period is not None
        end = period.end_s
        assert end is not None
        label = f"{o.mode.value} {self.scenario.name}"
        progress = Progress(end - period.start_s, label, enabled=o.progress)
        if o.mode is Mode.ACCELERATED:
            clock: SimClock | None = SimClock(period.start_s, o.speed)
            items = self.planner.items(period)
        else:
            clock = None
            small = self.planner.chunk_s() == DAY_S
            items = self.planner.items(period) if small else self.planner.items_by_sensor(period)
        self._publish_all(publisher, items, clock, progress, period.start_s)
        progress.close(end - period.start_s if not self._stop.is_set() else 0.0, self.ledger.messages)
        return end

    def _realtime_items(self, start_s: float) -> Iterator[PlanItem]:
        # Hour by hour, so the first messages go out at once rather than after the rest of the day is planned.
        return self.planner.items(Period(start_s), chunk_s=3600)

    def _publish_all(
        self,
        publisher: MqttPublisher,
        items: Iterable[PlanItem],
        clock: SimClock | None,
        progress: Progress | None,
        origin_s: float = 0.0,
    ) -> None:
        for item in items:
            if clock is not None and not clock.wait_until(item.publish_at, self._stop):
                return
            if self._stop.is_set():
                return
            if isinstance(item, Message) and not publisher.publish(item.topic, item.payload, self._stop):
                return
            self.ledger.record(item)
            if progress is not None:
                progress.update(item.publish_at - origin_s, self.ledger.messages)


def write_ground_truth(scenario: Scenario, ledger: Ledger, directory: Path, extra: dict[str, object]) -> None:
    """Compute the ground truth of what was sent and write it to `directory`."""
    from simulators.truth import compute_ground_truth

    truth = compute_ground_truth(scenario, ledger, extra=dict(extra))
    truth.write(directory)
    log.info("ground truth written to %s", directory)
