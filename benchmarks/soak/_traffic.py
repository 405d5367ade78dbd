"""The simulated city on an accelerated clock, published from a thread of the soak process.

Built from the simulator's own parts (planner, publisher, clock, ledger), as `livinglab simulate --mode accelerated`
is, with two differences a soak needs:

- the run stops when the simulated clock reaches the end of the period: messages that faults would deliver later
  (late ones, up to two hours) are not sent, so the ledger holds exactly what was published and the run lasts the
  simulated duration divided by the speed;
- it remembers when the readings the platform should store were sent, so the monitor can tell how long ago the
  first reading the database does not hold yet was published (the ingest lag, see `oldest_unstored_sent_at`).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time

from livinglab.settings import MqttUrl
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.messages import Message
from simulators.plan import Period, Planner, PlanOptions
from simulators.publisher import MqttPublisher, SimClock
from simulators.scenario import Scenario

#: The send history keeps one entry per this many seconds at most (the lag's resolution).
_HISTORY_STEP_S = 0.02


class Traffic:
    """Publishes `period` of `scenario` at `speed` times real time; `ledger` counts what was published."""

    def __init__(
        self,
        scenario: Scenario,
        mqtt_url: MqttUrl,
        *,
        period: Period,
        speed: float,
        rates: FaultRates,
        seed: int,
        prefix: str,
        client_id: str = "livinglab-soak",
    ) -> None:
        if period.end_s is None:
            raise ValueError("a soak runs over a finite period")
        self.period = period
        self.end_s: float = period.end_s
        self.speed = speed
        self.planner = Planner(scenario, seed, PlanOptions(prefix=prefix, rates=rates))
        self.ledger = Ledger(keep_readings=False, keep_log=False)
        self.publisher = MqttPublisher(mqtt_url, client_id, qos=1)
        #: Simulated due time of the last message published (the period's start before the first, its end after the
        #: last).
        self.reached_s = period.start_s
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.unacknowledged = 0
        self.error: BaseException | None = None
        self._clock: SimClock | None = None
        self._stop = threading.Event()
        self._clock_started = threading.Event()
        self._lock = threading.Lock()
        self._sent_at: list[float] = []
        self._to_store: list[int] = []
        self._thread = threading.Thread(target=self._run, name="soak-traffic", daemon=True)

    def start(self) -> None:
        """Connect to the broker (raises `PublishError` if it does not answer) and start publishing."""
        self.publisher.connect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_started(self, timeout_s: float = 600.0) -> bool:
        """Wait until the first messages are planned and the simulated clock runs (or publishing ended early)."""
        return self._clock_started.wait(timeout_s)

    def sim_now(self) -> float:
        """The simulated clock, within the period; once publishing ended, the time it reached."""
        if self._clock is None or self.finished_at is not None:
            return self.reached_s
        return min(self._clock.now(), self.end_s)

    def oldest_unstored_sent_at(self, stored: int) -> float | None:
        """When (`time.monotonic()`) the first reading beyond the `stored` ones was published, or None if no more
        readings to store have been published than that.

        Messages reach the database in the order they were published (one MQTT session, one ingester), so with
        `stored` rows in the database the oldest reading still on its way is the one that brought the ledger's count
        of readings to store past `stored`.
        """
        with self._lock:
            i = bisect.bisect_left(self._to_store, stored + 1)
            return self._sent_at[i] if i < len(self._sent_at) else None

    def _note_sent(self, to_store: int) -> None:
        now = time.monotonic()
        with self._lock:
            if self._to_store and to_store <= self._to_store[-1]:
                return
            if self._sent_at and now - self._sent_at[-1] < _HISTORY_STEP_S:
                # Within one step the earlier time stands for all: the lag errs by at most a step, upwards.
                self._to_store[-1] = to_store
            else:
                self._sent_at.append(now)
                self._to_store.append(to_store)

    def _run(self) -> None:
        try:
            self._publish_period()
        except BaseException as exc:  # reported by the monitor, which stops the soak
            self.error = exc
        finally:
            if not self.publisher.flush(timeout_s=30):
                self.unacknowledged = self.publisher.outstanding
            self.publisher.close()
            self.finished_at = time.monotonic()
            self._clock_started.set()

    def _publish_period(self) -> None:
        items = self.planner.items(self.period)
        # Plan the first chunk before the clock starts, so the run does not open with a burst of catching up.
        first = next(items, None)
        self._clock = clock = SimClock(self.period.start_s, self.speed)
        self.started_at = time.monotonic()
        self._clock_started.set()
        for item in itertools.chain([first] if first is not None else [], items):
            if item.publish_at > self.end_s:
                break
            if not clock.wait_until(item.publish_at, self._stop):
                return
            if isinstance(item, Message) and not self.publisher.publish(item.topic, item.payload, self._stop):
                return
            self.ledger.record(item)
            self.reached_s = item.publish_at
            self._note_sent(self.ledger.readings_stored)
        # Nothing more is due within the period: let the clock run out, so the run lasts the period.
        if clock.wait_until(self.end_s, self._stop):
            self.reached_s = self.end_s
