"""One soak run: the platform up, the accelerated city published into it, the database and the processes watched
until everything sent is stored and computed, then the figures.

The monitor runs in the main thread. Twice a second it samples each process's memory, checks that the roles are
alive and probes the database's small tables (committed readings, rejections, the processor's queues); every
`sample_interval_s` it also counts the readings table and prints a row. After the last message it goes on probing
until the platform has stored every reading and rejection the ledger expects and the processor has caught up, so
the closing figures say how long the platform took to settle.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg

from benchmarks._servers import database_server
from benchmarks.soak._observe import (
    Accounting,
    DatabaseState,
    MemoryTracker,
    ProcessMemory,
    count_rows,
    database_state,
    final_accounting,
)
from benchmarks.soak._platform import Platform, running_platform
from benchmarks.soak._report import format_row
from benchmarks.soak._traffic import Traffic
from livinglab.launch import drop_database, scratch_database
from livinglab.settings import MqttUrl
from simulators.command import register_scenario
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.plan import Period
from simulators.scenario import Scenario, load_scenario

PREFIX = "livinglab/v1"
ROLES = ("ingester", "processor", "broker")
#: Seconds between probes of memory and of the database's counts and queues.
TICK_S = 0.5
#: The longest period: it must start within the platform's maximum lateness (7 days), with a margin.
_LONGEST_S = 6 * 86400.0
#: Give up waiting for the platform to settle when neither the stored counts nor the queues moved for this long.
_STALL_S = 120.0


@dataclass(frozen=True, slots=True)
class SoakOptions:
    """A soak run. The simulated period ends now (rounded down to the minute) and lasts `duration_s`."""

    scenario: str = "large"
    duration_s: float = 3600.0
    speed: float = 3.0
    faults: str = "default"
    seed: int = 1
    sample_interval_s: float = 30.0
    #: A URL to any database on the PostgreSQL server to use (default: LIVINGLAB_TEST_DATABASE_URL, else embedded).
    database_server: str | None = None
    drain_timeout_s: float = 900.0
    log_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe: where publishing was, what the database held, and the memory of each process (MiB)."""

    elapsed_s: float
    publishing: bool
    sim_s: float
    messages: int
    to_store: int
    state: DatabaseState
    ingest_lag_s: float
    rss_mib: dict[str, float]


@dataclass(slots=True)
class SoakResult:
    """Everything the closing summary reports."""

    options: SoakOptions
    scenario: Scenario
    period: Period
    ledger: Ledger
    database: str
    log_dir: Path
    pids: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    memory: dict[str, ProcessMemory] = field(default_factory=dict)
    publish_s: float = 0.0
    published: Sample | None = None
    stored_after_s: float | None = None
    windows_after_s: float | None = None
    caught_up_after_s: float | None = None
    accounting: Accounting | None = None
    unacknowledged: int = 0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    interrupted: bool = False
    error: str | None = None

    def worst(self, value: Callable[[Sample], float], half: int) -> float:
        """The largest value over the probes taken in the first (`half=1`) or second half of publishing."""
        middle = self.publish_s / 2
        chosen = (s for s in self.samples if s.publishing and (s.elapsed_s < middle) == (half == 1))
        return max((value(s) for s in chosen), default=0.0)

    @property
    def matches(self) -> bool:
        """The database holds exactly what the ledger expects: readings, duplicates and rejections by reason."""
        a = self.accounting
        return (
            a is not None
            and a.stored == self.ledger.readings_stored
            and a.duplicates == self.ledger.duplicates
            and +a.rejected_by_reason == +self.ledger.rejections
        )


class _Soak:
    def __init__(
        self, result: SoakResult, platform: Platform, traffic: Traffic, conn: psycopg.Connection[Any], out: TextIO
    ) -> None:
        self.result = result
        self.platform = platform
        self.traffic = traffic
        self.conn = conn
        self.out = out
        self.options = result.options
        self.memory = MemoryTracker.with_self(platform.pids())
        result.memory = self.memory.processes
        result.pids = {**platform.pids(), "soak (simulator)": os.getpid()}
        self.t0 = time.monotonic()

    def probe(self, publishing: bool) -> Sample:
        # The publisher's side first: the database is then seen at least as late as the ledger.
        at, ledger = time.monotonic(), self.result.ledger
        sim_s, messages, to_store = self.traffic.sim_now(), ledger.messages, ledger.readings_stored
        state = database_state(self.conn)
        sent_at = self.traffic.oldest_unstored_sent_at(state.committed)
        lag = max(0.0, at - sent_at) if sent_at is not None else 0.0
        rss = {name: self.memory.last_mib(name) for name in ROLES}
        return Sample(at - self.t0, publishing, sim_s, messages, to_store, state, lag, rss)

    def tick(self, until: float) -> None:
        """Sleep until `until` (monotonic), then sample memory and check that the roles are alive."""
        time.sleep(max(0.0, until - time.monotonic()))
        self.memory.sample()
        self.platform.check_running()

    def run(self) -> None:
        self.memory.sample()
        self.memory.mark("start")
        self.traffic.start()
        try:
            while not self.traffic.wait_started(timeout_s=1.0):
                self.platform.check_running()  # planning the first messages of a large city takes a while
            self.t0 = self.traffic.started_at or time.monotonic()
            self._publish()
        except BaseException:
            self.traffic.stop()
            raise
        finally:
            self.traffic.join(60)
            self.result.unacknowledged = self.traffic.unacknowledged
        if self.traffic.error is not None:
            raise RuntimeError(f"publishing failed: {self.traffic.error!r}") from self.traffic.error
        self._settle()

    def _publish(self) -> None:
        expected_s = self.options.duration_s / self.options.speed
        next_row = self.t0 + self.options.sample_interval_s
        half_marked = False
        tick = self.t0
        while self.traffic.running:
            tick += TICK_S
            self.tick(tick)
            sample = self.probe(publishing=True)
            self.result.samples.append(sample)
            if not half_marked and sample.elapsed_s >= expected_s / 2:
                self.memory.mark("half")
                half_marked = True
            if time.monotonic() >= next_row and self.traffic.running:  # else the closing row follows at once
                self.emit(sample)
                next_row += self.options.sample_interval_s
        self.result.publish_s = (self.traffic.finished_at or time.monotonic()) - self.t0
        self.memory.sample()
        if not half_marked:
            self.memory.mark("half")
        self.memory.mark("published")
        published = self.probe(publishing=True)
        self.result.samples.append(published)
        self.result.published = published
        self.emit(published)

    def _settle(self) -> None:
        """Probe twice a second until everything expected is stored and the processor has caught up (hours and days
        still waiting out their rollup delay are left: the delay is a setting, not a lag)."""
        ledger, result = self.result.ledger, self.result
        end = self.traffic.finished_at or time.monotonic()
        next_row = time.monotonic() + self.options.sample_interval_s
        last_change, last_key = time.monotonic(), None
        tick = time.monotonic()
        while True:
            sample = self.probe(publishing=False)
            now, state = time.monotonic(), sample.state
            everything_in = state.committed >= ledger.readings_stored and state.rejected >= ledger.rejected
            if result.stored_after_s is None and everything_in:
                result.stored_after_s = now - end
            if result.stored_after_s is not None:
                if result.windows_after_s is None and state.windows == 0:
                    result.windows_after_s = now - end
                if state.processor_caught_up:
                    result.caught_up_after_s = now - end
            key = (state.committed, state.rejected, state.windows, state.rollups)
            if key != last_key:
                last_change, last_key = now, key
            done = result.caught_up_after_s is not None
            given_up = now - last_change > _STALL_S or now - end > self.options.drain_timeout_s
            if now >= next_row or done or given_up:
                self.emit(sample)
                next_row += self.options.sample_interval_s
            if done or given_up:
                break
            tick += TICK_S
            self.tick(tick)
        self.memory.sample()
        self.memory.mark("settled")

    def emit(self, sample: Sample) -> None:
        print(format_row(sample, count_rows(self.conn)), file=self.out, flush=True)


def default_log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="livinglab-soak-"))


def run_soak(
    options: SoakOptions, out: TextIO = sys.stdout, on_start: Callable[[SoakResult], None] | None = None
) -> SoakResult:
    """Run a soak and return its figures (`on_start` sees the result before the first message, e.g. to print a
    header). Ctrl-C ends publishing early; the platform is stopped and the database dropped in every case."""
    if options.duration_s > _LONGEST_S:
        raise ValueError(f"a soak publishes at most {_LONGEST_S / 86400:g} days: older readings would be rejected")
    scenario = load_scenario(options.scenario)
    rates = FaultRates.parse(options.faults)  # a bad option fails before anything starts
    log_dir = options.log_dir or default_log_dir()
    with database_server(options.database_server) as server:
        name, url = scratch_database(server, "soak")
        try:
            register_scenario(url, scenario)
            with running_platform(url, log_dir, PREFIX) as platform, psycopg.connect(url, autocommit=True) as conn:
                end = time.time() // 60 * 60
                period = Period(end - options.duration_s, end)
                traffic = Traffic(
                    scenario,
                    MqttUrl.parse(platform.broker.url),
                    period=period,
                    speed=options.speed,
                    rates=rates,
                    seed=options.seed,
                    prefix=PREFIX,
                )
                result = SoakResult(
                    options, scenario, period, traffic.ledger, name, log_dir, load_start=os.getloadavg()
                )
                soak = _Soak(result, platform, traffic, conn, out)
                if on_start is not None:
                    on_start(result)
                try:
                    soak.run()
                except KeyboardInterrupt:
                    result.interrupted = True
                except Exception as exc:
                    result.error = f"{type(exc).__name__}: {exc}"
                result.accounting = final_accounting(conn)
                result.load_end = os.getloadavg()
                return result
        finally:
            drop_database(server, name)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
