"""Where the CPU goes while a drain runs: per process (from /proc) and for the whole machine.

The scale benchmark reads these to say what limits scaling: the roles themselves, their PostgreSQL backends, the
broker, or a machine already busy with everything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def backend_pids(conn: psycopg.Connection[Any], application_prefix: str) -> list[int]:
    """PostgreSQL backends of the clients whose application_name starts with `application_prefix`."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", (application_prefix + "%",)
    ).fetchall()
    return [int(r[0]) for r in rows]


@dataclass
class CpuMeter:
    """CPU used by groups of processes between `start()` and `stop()`, and how busy the machine was."""

    groups: dict[str, list[int]] = field(default_factory=dict)
    _start: dict[int, float] = field(default_factory=dict)
    _ticks: tuple[int, int] = (0, 0)
    used_s: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0

    def add(self, group: str, pids: Iterable[int]) -> None:
        """Watch more processes; one seen for the first time after `start()` counts from zero."""
        self.groups.setdefault(group, [])
        for pid in pids:
            if pid not in self.groups[group]:
                self.groups[group].append(pid)

    def start(self) -> None:
        self._start = {pid: process_cpu_s(pid) for pids in self.groups.values() for pid in pids}
        self._ticks = machine_ticks()

    def stop(self) -> None:
        busy, total = machine_ticks()
        self.machine_busy = (busy - self._ticks[0]) / max(1, total - self._ticks[1])
        self.used_s = {
            group: sum(process_cpu_s(pid) - self._start.get(pid, 0.0) for pid in pids)
            for group, pids in self.groups.items()
        }

    def summary(self, seconds: float) -> str:
        """CPU per group as cores busy over `seconds`, and the machine's busy share."""
        cores = ", ".join(f"{group} {used / seconds:.2f}" for group, used in self.used_s.items())
        return f"{cores}; machine {self.machine_busy:.0%} busy"
