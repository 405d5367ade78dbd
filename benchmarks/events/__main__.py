"""`python -m benchmarks.events`: the change-event feed under stress, several processors writing events while
several SSE clients follow `/v1/stream`, most of them dropping their stream now and then and resuming with
`Last-Event-ID`.

Two phases on the same load, each on a scratch database of the PostgreSQL server of `--database-server` (default
LIVINGLAB_TEST_DATABASE_URL, else a server of its own): first the baseline, one processor (`--baseline`, 2 minutes),
then the stress run, `--processors` processors (3) for `--duration` (10 minutes). The load is a two-city network of
air stations and traffic counters written the way the ingester writes, on a data clock of a minute per tick; the
processors and the API run as `python -m livinglab process|api` processes, the load and the clients as threads of
this one. The clients: one that never drops its stream, one that asks for `aggregates` only, and the others dropping
theirs every `--reconnect-every` seconds (5) on average.

Printed per phase: events committed and per second, windows computed, and per client the events received, missing
(committed after it connected, never received) and repeated or out of order, with the delay from the start of the
round that wrote an event to its receipt (p50, p95, max); after the stress phase, every stored result compared with a
clean run over the same readings. The exit status is 1 when any client missed or repeated an event, or a result
differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import numpy as np

from benchmarks.events._run import Options, PhaseResult, run_phase
from livinglab.launch import database_server


def _parse(argv: list[str] | None) -> argparse.Namespace:
    summary = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.events", description=summary)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of the stress phase (600)")
    parser.add_argument("--baseline", type=float, default=120.0, help="seconds of the one-processor baseline (120)")
    parser.add_argument("--processors", type=int, default=3, help="processors in the stress phase (3)")
    parser.add_argument("--clients", type=int, default=6, help="SSE clients in each phase (6)")
    parser.add_argument("--reconnect-every", type=float, default=5.0, help="mean seconds between drops (5)")
    parser.add_argument("--stations", type=int, default=3, help="air stations per district; 4 districts (3)")
    parser.add_argument("--tick", type=float, default=0.2, help="seconds between the load's ticks (0.2)")
    parser.add_argument("--database-server", default=os.environ.get("LIVINGLAB_TEST_DATABASE_URL"))
    parser.add_argument("--log-dir", type=Path, default=None, help="role logs (default: a temporary directory)")
    return parser.parse_args(argv)


def _ms(values: np.ndarray, q: float) -> str:
    return f"{np.percentile(values, q) * 1000:,.0f}" if values.size else "-"


def _report(phases: list[tuple[str, PhaseResult]], out: TextIO) -> bool:
    print("\n| phase | processors | seconds | events | events/s | 1-minute windows | readings |", file=out)
    print("|---|---:|---:|---:|---:|---:|---:|", file=out)
    for label, r in phases:
        print(
            f"| {label} | {r.options.processors} | {r.seconds:,.0f} | {r.events:,} | {r.events_per_s:,.1f} |"
            f" {r.windows:,} | {r.readings:,} |",
            file=out,
        )
    print("\n| phase | client | streams | received | missing | repeated or out of order |", file=out)
    print("|---|---|---:|---:|---:|---:|", file=out)
    clean = True
    for label, r in phases:
        for n, c in enumerate(r.clients):
            print(
                f"| {label} | {n + 1} ({c.kind}) | {c.responses} | {c.received:,} | {c.missing} | {c.repeated} |",
                file=out,
            )
            clean &= c.missing == 0 and c.repeated == 0
    print("\n| phase | delay from round start to receipt: p50 ms | p95 ms | max ms |", file=out)
    print("|---|---:|---:|---:|", file=out)
    for label, r in phases:
        delays = r.delays()
        print(f"| {label} | {_ms(delays, 50)} | {_ms(delays, 95)} | {_ms(delays, 100)} |", file=out)
    for label, r in phases:
        if r.differing is not None:
            print(f"\n{label}: {r.result_rows:,} result rows, {r.differing} differing from a clean run", file=out)
            clean &= r.differing == 0
    return clean


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="livinglab-bench-events-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    out = sys.stdout

    def options(processors: int, duration_s: float, clean_check: bool) -> Options:
        return Options(
            processors, duration_s, args.clients, args.reconnect_every, args.stations, args.tick, clean_check
        )

    phases: list[tuple[str, PhaseResult]] = []
    with database_server(args.database_server) as server:
        print(f"role logs in {log_dir}", file=out)
        for label, opts in (
            ("baseline", options(1, args.baseline, False)),
            ("stress", options(args.processors, args.duration, True)),
        ):
            print(f"{label}: {opts.processors} processor(s), {opts.clients} clients, {opts.duration_s:.0f} s", file=out)
            phases.append((label, run_phase(server, opts, log_dir, out, label)))
    return 0 if _report(phases, out) else 1


if __name__ == "__main__":
    sys.exit(main())
