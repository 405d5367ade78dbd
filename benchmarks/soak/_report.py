"""What the soak prints: a header, one table row per sample, and the closing summary (Markdown tables)."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from benchmarks.soak._observe import MIB

if TYPE_CHECKING:
    from benchmarks.soak._run import Sample, SoakResult

_COLUMNS = (
    "elapsed s",
    "simulated (UTC)",
    "messages",
    "readings to store",
    "rows stored",
    "rejected",
    "ingest lag s",
    "windows queued",
    "oldest s",
    "rollups due",
    "oldest s",
    "ingester MiB",
    "processor MiB",
    "broker MiB",
)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in load)


def header(result: SoakResult) -> list[str]:
    """The lines before the first row: what runs, on what, and what the columns mean."""
    o, period = result.options, result.period
    end = period.end_s if period.end_s is not None else period.start_s
    return [
        f"# Soak: scenario {result.scenario.name} ({len(result.scenario.sensors):,} sensors), {_span(o.duration_s)}"
        f" simulated at {o.speed:g}x (about {_span(o.duration_s / o.speed)} of publishing), faults {o.faults},"
        f" seed {o.seed}",
        "",
        f"Simulated period {_day(period.start_s)} to {_day(end)}; {os.cpu_count()} cores, load average"
        f" {_load(result.load_start)} at the start; role logs in {result.log_dir}",
        "Processes: " + ", ".join(f"{name} pid {pid}" for name, pid in result.pids.items()),
        "",
        "ingest lag: how long ago the oldest reading not yet committed by the ingester was published (0: all"
        " committed; probed twice a second from ingest_counters, written in the same transaction as the rows);"
        " windows queued / rollups due: the processor's queues of 1-minute windows and of hours and days past"
        " their rollup delay, with the longest wait in each.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---:|" * len(_COLUMNS),
    ]


def format_row(s: Sample, rows: int) -> str:
    """One printed row: the sample `s` and the rows counted in the readings table right after it."""
    state = s.state
    cells = [
        f"{s.elapsed_s:,.0f}",
        _clock(s.sim_s) if s.publishing else "settling",
        f"{s.messages:,}",
        f"{s.to_store:,}",
        f"{rows:,}",
        f"{state.rejected:,}",
        f"{s.ingest_lag_s:.1f}",
        f"{state.windows:,}",
        f"{state.windows_age_s:.1f}",
        f"{state.rollups_due:,}",
        f"{state.rollups_age_s:.1f}",
        *(f"{s.rss_mib[name]:.1f}" for name in ("ingester", "processor", "broker")),
    ]
    return "| " + " | ".join(cells) + " |"


def _mib(value: int | None) -> str:
    return f"{value / MIB:.1f}" if value else "-"


def _after(seconds: float | None, what: str) -> str:
    return f"{what} after {seconds:.0f} s" if seconds is not None else f"not {what} (gave up waiting)"


def _memory(result: SoakResult) -> list[str]:
    lines = [
        "### Memory (resident set size, MiB)",
        "",
        "| process | pid | start | half-way | end of publishing | settled | peak | second half | CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in result.memory.items():
        half, published = m.marks.get("half"), m.marks.get("published")
        growth = f"{(published - half) / MIB:+.1f}" if half and published else "-"
        lines.append(
            f"| {name} | {m.pid} | {_mib(m.marks.get('start'))} | {_mib(half)} | {_mib(published)} |"
            f" {_mib(m.marks.get('settled'))} | {_mib(m.peak)} | {growth} | {m.cpu_s:,.1f} |"
        )
    lines += ["", "second half: growth from half-way to the end of publishing, when start-up effects are over."]
    return lines


def _lag(result: SoakResult) -> list[str]:
    end = result.published
    if end is None:
        return ["### Lag", "", "publishing did not finish: no lag at its end"]

    def worst(half: int) -> tuple[str, str, str]:
        w = result.worst
        return (
            f"{w(lambda s: s.ingest_lag_s, half):.1f} s",
            f"{w(lambda s: s.state.windows, half):,.0f} (oldest {w(lambda s: s.state.windows_age_s, half):.1f} s)",
            f"{w(lambda s: s.state.rollups_due, half):,.0f} (oldest {w(lambda s: s.state.rollups_age_s, half):.1f} s)",
        )

    e = end.state
    at_end = (
        f"{end.ingest_lag_s:.1f} s",
        f"{e.windows:,} (oldest {e.windows_age_s:.1f} s)",
        f"{e.rollups_due:,} (oldest {e.rollups_age_s:.1f} s)",
    )
    after = (
        _after(result.stored_after_s, "all stored"),
        _after(result.windows_after_s, "empty"),
        _after(result.caught_up_after_s, "caught up"),
    )
    labels = (
        "ingest: oldest reading published and not yet committed",
        "processor: 1-minute windows queued",
        "processor: hours and days due",
    )
    first, second = worst(1), worst(2)
    lines = [
        "### Lag",
        "",
        "| | worst, first half of publishing | worst, second half | at the end of publishing | after it ended |",
        "|---|---|---|---|---|",
    ]
    for i, label in enumerate(labels):
        lines.append(f"| {label} | {first[i]} | {second[i]} | {at_end[i]} | {after[i]} |")
    return lines


def _accounting(result: SoakResult) -> list[str]:
    ledger, a = result.ledger, result.accounting
    if a is None:
        return ["### Accounting", "", "the database could not be read"]

    def row(label: str, expected: int, actual: int, where: str) -> str:
        return f"| {label} | {expected:,} | {actual:,} ({where}) | {actual - expected:+,} |"

    injected = Counter(ledger.rejections)
    reasons = sorted(set(injected) | set(a.rejected_by_reason))
    lines = [
        "### Readings and rejections: the simulator's ledger against the database",
        "",
        f"{ledger.messages:,} messages published carrying {ledger.readings_sent:,} readings"
        f" ({result.unacknowledged:,} not acknowledged by the broker at the end).",
        "",
        "| | ledger | database | difference |",
        "|---|---:|---:|---:|",
        row("readings to store", ledger.readings_stored, a.stored, "rows in readings"),
        row("duplicate readings", ledger.duplicates, a.duplicates, "ingest_counters"),
        row("rejected messages", ledger.rejected, a.rejected_by_reason.total(), "rows in rejected"),
        "",
        "| rejection reason | injected | rejected | difference |",
        "|---|---:|---:|---:|",
    ]
    for reason in reasons:
        n, got = injected[reason], a.rejected_by_reason[reason]
        lines.append(f"| {reason} | {n:,} | {got:,} | {got - n:+,} |")
    faults = ", ".join(f"{name} {n:,}" for name, n in sorted(ledger.faults.items())) or "none"
    lines += ["", f"Faults injected: {faults} (gap and outage count readings never sent)."]
    return lines


def summary(result: SoakResult) -> list[str]:
    """The closing figures: memory per process, lag, and the accounting of what was sent against what is stored."""
    status = "interrupted" if result.interrupted else "stopped by an error" if result.error else "completed"
    reached = result.published.sim_s - result.period.start_s if result.published else 0.0
    lines = [
        "",
        "## Summary",
        "",
        f"Publishing {status}: {_span(reached)} of simulated time in {_span(result.publish_s)}"
        f" ({reached / max(result.publish_s, 1e-9):.2f}x); load average"
        f" {_load(result.load_start)} at the start, {_load(result.load_end)} at the end.",
    ]
    if result.error:
        lines += ["", f"Error: {result.error}"]
    lines += ["", *_memory(result), "", *_lag(result), "", *_accounting(result), ""]
    lines.append(
        "Result: the database holds exactly what the ledger expects."
        if result.matches
        else "Result: MISMATCH between the ledger and the database (see the differences above)."
    )
    return lines
