"""A progress bar for backfill and load runs, and the end-of-run summary.

On a terminal the bar redraws one line; elsewhere (logs, CI, a child of `livinglab up`) it prints a line at most
every 10 seconds. Both go to standard error, so standard output stays free for what a command prints as its result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO


class Progress:
    """Progress towards `total` (messages, or simulated seconds), with a rate in messages per second."""

    def __init__(self, total: float, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0

    def update(self, done: float, messages: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        interval = 0.2 if self.tty else 10.0
        if not force and now - self._last_draw < interval:
            return
        self._last_draw = now
        share = min(1.0, max(0.0, done / self.total))
        elapsed = max(now - self.started, 1e-9)
        filled = int(share * 30)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%}  "
            f"{messages:,} messages  {messages / elapsed:,.0f} msg/s  {elapsed:,.0f} s"
        )
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, done: float, messages: int) -> None:
        if not self.enabled:
            return
        self.update(done, messages, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def format_summary(summary: Mapping[str, Any], elapsed_s: float) -> str:
    """The end-of-run summary: messages sent (by kind), readings, faults by type, expected rejections by reason."""
    messages = int(summary.get("messages", 0))
    lines = [
        f"sent {messages:,} messages ({summary.get('bytes', 0):,} bytes) in {elapsed_s:,.1f} s"
        f" ({messages / max(elapsed_s, 1e-9):,.0f} msg/s)",
        "  by kind: " + _pairs(summary.get("messages_by_kind", {})),
        f"  readings: {summary.get('readings_sent', 0):,} sent, {summary.get('readings_stored', 0):,} to store,"
        f" {summary.get('duplicates', 0):,} duplicates",
        "  faults injected: " + _pairs(summary.get("faults", {})),
        "  expected rejections: " + _pairs(summary.get("expected_rejections", {})),
    ]
    if summary.get("planning_surprises"):
        lines.append(f"  WARNING: {summary['planning_surprises']} messages planned with an outcome the contract denies")
    return "\n".join(lines)


def _pairs(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {value:,}" for name, value in counts.items()) or "none"
