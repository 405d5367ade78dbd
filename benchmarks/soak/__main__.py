"""`python -m benchmarks.soak`: an hour of accelerated city traffic with faults into a real platform, watched for a
leak or a growing lag.

The soak starts everything it uses on free loopback ports: its own Mosquitto (the shipped tuning), a scratch
database on the PostgreSQL server of `--database-server` (default LIVINGLAB_TEST_DATABASE_URL, else
LIVINGLAB_DATABASE_URL, else an embedded one), and an ingester and a processor as separate `python -m livinglab
ingest|process` processes. It registers the scenario's sensors and publishes the simulated period that ends now on
a clock `--speed` times faster, with the simulator's fault injection on, from a thread of its own process.

Every `--sample-interval` seconds it prints a row: elapsed time, simulated time reached, messages published,
readings the ledger expects stored, rows stored, rejections, ingest lag, the processor's queues and the memory
(RSS) of the ingester, the processor and the broker. After the last message it waits until the platform has stored
everything and emptied its queues, then prints the memory of each process at the start, half-way, at the end and
at its peak, the lag at the end and how long settling took, and the readings stored and the rejections by reason
against what the simulator's ledger expects. It stops exactly the processes it started (by pid) and drops its
database. The exit status is 1 when the database does not hold what the ledger expects or the run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from types import FrameType

from benchmarks.soak._report import header, summary
from benchmarks.soak._run import SoakOptions, SoakResult, run_soak

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(text: str) -> float:
    """`90s`, `15m`, `1h`, `1.5h` or plain seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d)?\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration such as 90s, 15m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parse_options(argv: list[str] | None = None) -> SoakOptions:
    summary_line = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=summary_line)
    parser.add_argument("--duration", type=duration_s, default=3600.0, help="simulated time to publish (1h)")
    parser.add_argument("--speed", type=positive, default=3.0, help="simulated seconds per second (3: 1 h in 20 min)")
    parser.add_argument("--scenario", default="large", help="shipped scenario name or YAML path (large: 3,024 sensors)")
    parser.add_argument(
        "--faults", default="default", help="fault rates as `livinglab simulate --faults` takes them (default)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (1)")
    parser.add_argument("--sample-interval", type=duration_s, default=30.0, help="wall time between rows (30s)")
    parser.add_argument(
        "--database-server",
        default=os.environ.get("LIVINGLAB_TEST_DATABASE_URL") or os.environ.get("LIVINGLAB_DATABASE_URL"),
        help="URL of any database on the PostgreSQL server to create the scratch database on"
        " (default: LIVINGLAB_TEST_DATABASE_URL, else LIVINGLAB_DATABASE_URL, else an embedded server)",
    )
    parser.add_argument(
        "--drain-timeout", type=duration_s, default=900.0, help="longest wait for the platform to settle (15m)"
    )
    args = parser.parse_args(argv)
    return SoakOptions(
        scenario=args.scenario,
        duration_s=args.duration,
        speed=args.speed,
        faults=args.faults,
        seed=args.seed,
        sample_interval_s=args.sample_interval,
        database_server=args.database_server,
        drain_timeout_s=args.drain_timeout,
    )


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM ends the run like Ctrl-C: the platform is stopped, the database dropped and the summary printed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)

    def print_header(result: SoakResult) -> None:
        print("\n".join(header(result)), flush=True)

    result = run_soak(options, sys.stdout, on_start=print_header)
    print("\n".join(summary(result)), flush=True)
    return 0 if result.matches and not result.error and not result.interrupted else 1


if __name__ == "__main__":
    raise SystemExit(main())
