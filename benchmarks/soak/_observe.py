"""What the soak watches: the database's counts and work queues, and the memory of each process it started."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg

# Cheap enough to run twice a second on a large run: every table here stays small. `accepted` in ingest_counters is
# written in the same transaction as the readings, so its sum is the count of committed readings.
_STATE = """
SELECT (SELECT coalesce(sum(accepted), 0) FROM ingest_counters),
       (SELECT count(*) FROM rejected),
       (SELECT count(*) FROM dirty_windows),
       (SELECT extract(epoch FROM now() - min(marked_at)) FROM dirty_windows),
       (SELECT count(*) FROM dirty_rollups WHERE due_at <= now()),
       (SELECT extract(epoch FROM now() - min(due_at)) FROM dirty_rollups WHERE due_at <= now()),
       (SELECT count(*) FROM dirty_rollups)
"""

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """One look at the database.

    `committed`: readings the ingester has committed; `windows_age_s`: how long the oldest queued 1-minute window
    has waited since it was last marked dirty; `rollups_due`: queued hours and days whose delay
    (`LIVINGLAB_HOUR_ROLLUP_DELAY_S`, `LIVINGLAB_DAY_ROLLUP_DELAY_S`) has passed, `rollups_age_s` the longest any of
    them has been due; `rollups` also counts those still waiting out the delay.
    """

    committed: int
    rejected: int
    windows: int
    windows_age_s: float
    rollups_due: int
    rollups_age_s: float
    rollups: int

    @property
    def processor_caught_up(self) -> bool:
        """No 1-minute window queued and no hour or day past its rollup delay."""
        return self.windows == 0 and self.rollups_due == 0


def database_state(conn: psycopg.Connection[Any]) -> DatabaseState:
    row = conn.execute(_STATE).fetchone()
    assert row is not None
    committed, rejected, windows, windows_age, due, due_age, rollups = row
    return DatabaseState(
        int(committed),
        int(rejected),
        int(windows),
        float(windows_age or 0.0),
        int(due),
        float(due_age or 0.0),
        int(rollups),
    )


def count_rows(conn: psycopg.Connection[Any]) -> int:
    """Rows in the readings table (a full count: only for the printed rows and the end)."""
    row = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True, slots=True)
class Accounting:
    """What the database holds at the end, to set beside the simulator's ledger."""

    stored: int
    rejected_by_reason: Counter[str]
    duplicates: int


def final_accounting(conn: psycopg.Connection[Any]) -> Accounting:
    reasons = Counter({str(r): int(n) for r, n in conn.execute("SELECT reason, count(*) FROM rejected GROUP BY 1")})
    duplicates = conn.execute("SELECT coalesce(sum(duplicates), 0) FROM ingest_counters").fetchone()
    assert duplicates is not None
    return Accounting(count_rows(conn), reasons, int(duplicates[0]))


@dataclass(slots=True)
class ProcessMemory:
    """RSS of one process at named moments, its peak, and the CPU it used since the first sample."""

    pid: int
    marks: dict[str, int] = field(default_factory=dict)
    last: int = 0
    peak: int = 0
    cpu_first_s: float | None = None
    cpu_last_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.cpu_last_s - (self.cpu_first_s or 0.0)


class MemoryTracker:
    """Samples the resident set size (RSS) of named processes; `mark` keeps the latest sample under a name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: ProcessMemory(pid) for name, pid in pids.items()}
        self._handles = {name: psutil.Process(pid) for name, pid in pids.items()}

    @classmethod
    def with_self(cls, pids: dict[str, int], name: str = "soak (simulator)") -> MemoryTracker:
        return cls({**pids, name: os.getpid()})

    def sample(self) -> None:
        for name, handle in self._handles.items():
            memory = self.processes[name]
            try:
                with handle.oneshot():
                    rss = int(handle.memory_info().rss)
                    times = handle.cpu_times()
            except psutil.Error:  # gone: the monitor reports the exit itself
                continue
            cpu = float(times.user + times.system)
            if memory.cpu_first_s is None:
                memory.cpu_first_s = cpu
            memory.cpu_last_s = cpu
            memory.last = rss
            memory.peak = max(memory.peak, rss)

    def mark(self, label: str) -> None:
        for memory in self.processes.values():
            memory.marks[label] = memory.last

    def last_mib(self, name: str) -> float:
        memory = self.processes.get(name)
        return memory.last / MIB if memory else float("nan")
