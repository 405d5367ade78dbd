"""The API's latency tail with and without its startup objects frozen (`LIVINGLAB_GC_FREEZE`), in one run.

    python -m benchmarks.api_gc [--pairs 2] [--cycles 3] [--database-url URL]

On the data of `benchmarks.api` (a scratch database, 1,500 sensors, 30 days of hourly rows), two routes whose p99 at
half rate came near or above 50 ms there: the aggregates route with the response cache on (172 sensors' URLs in
turn) and the service levels of 30 days with the cache off. For each route, `--pairs` pairs of API servers, one with
`LIVINGLAB_GC_FREEZE=true` (the default) and one with `false`, in alternating order (ABBA), each fresh: `--cycles`
times the most requests per second 16 clients get in 4 s, then the latency paced at half that rate for 6 s, as
`benchmarks.api` measures it. Printed per setting: the paced runs' p99 (median and largest) and, from the server's
`livinglab_api_gc_pause_seconds`, the full (generation 2) collector passes that ran once the server was up, with
their mean length and the bucket of the longest. Needs `wrk` (Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.api import (
    AGGREGATES,
    SERVICE_LEVELS,
    add_database_url,
    loaded_database,
    paced,
    route_paths,
    run_wrk,
    start_server,
    wrk_missing,
)
from livinglab.storage.keys import Scope, create_key

#: Route, the server's extra settings.
CASES: tuple[tuple[str, str, dict[str, str]], ...] = (
    (AGGREGATES, "cache on", {}),
    (SERVICE_LEVELS, "cache off", {"LIVINGLAB_RESPONSE_CACHE_S": "0"}),
)


@dataclass(frozen=True)
class FullPasses:
    """The generation-2 passes a server's /metrics counted: how many, their total seconds, per bucket bound."""

    count: int
    sum_s: float
    buckets: dict[float, int]

    def plus(self, other: FullPasses, sign: int = 1) -> FullPasses:
        """These passes and `other`'s together (`sign` -1: these without `other`'s, counted earlier)."""
        return FullPasses(
            self.count + sign * other.count,
            self.sum_s + sign * other.sum_s,
            {le: n + sign * other.buckets.get(le, 0) for le, n in self.buckets.items()},
        )

    def longest(self) -> str:
        """The bucket of the longest pass: the lowest bound that every pass is under ("-" when none ran)."""
        if self.count == 0:
            return "-"
        bound = min(le for le, n in self.buckets.items() if n == self.count)
        return "> 250 ms" if bound == float("inf") else f"<= {bound * 1000:g} ms"


def full_passes(base: str) -> FullPasses:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        if family.name == "livinglab_api_gc_pause_seconds"
        for sample in family.samples
        if sample.labels.get("generation") == "2"
    ]
    buckets = {float(s.labels["le"]): int(s.value) for s in samples if s.name.endswith("_bucket")}
    sum_s = sum(s.value for s in samples if s.name.endswith("_sum"))
    return FullPasses(buckets.get(float("inf"), 0), sum_s, buckets)


def measure(url: str, key: str, paths: list[str], extra: dict[str, str], cycles: int) -> tuple[list[float], FullPasses]:
    server, base = start_server(url, extra)
    try:
        before = full_passes(base)
        p99 = []
        for _ in range(cycles):
            full = run_wrk(base, paths, connections=16, duration_s=4, think_ms=0, key=key)
            p99.append(paced(base, paths, full.rate / 2, duration_s=6, key=key).p99_ms)
        return p99, full_passes(base).plus(before, -1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_url(parser)
    parser.add_argument("--pairs", type=int, default=2, help="servers of each setting per route, in ABBA order")
    parser.add_argument("--cycles", type=int, default=3, help="full-rate and paced runs per server")
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    now = datetime.now(UTC)
    with loaded_database(args.database_url, "llbench_api_gc", now) as url:
        with psycopg.connect(url) as conn:
            key = create_key(conn, Scope.READ, name="bench")
            conn.commit()
        paths = route_paths(now)
        print(f"| route | {'LIVINGLAB_GC_FREEZE':<19} | paced p99, median (largest) | full passes | mean | longest |")
        print("|---|---|---:|---:|---:|---|")
        for route, cache, extra in CASES:
            results: dict[bool, tuple[list[float], list[FullPasses]]] = {True: ([], []), False: ([], [])}
            for i in range(args.pairs):
                for freeze in (True, False) if i % 2 == 0 else (False, True):
                    env = {**extra, "LIVINGLAB_GC_FREEZE": str(freeze).lower()}
                    p99, passes = measure(url, key, paths[route], env, args.cycles)
                    results[freeze][0].extend(p99)
                    results[freeze][1].append(passes)
            for freeze in (True, False):
                p99s, each = results[freeze]
                total = functools.reduce(FullPasses.plus, each)
                mean_ms = total.sum_s / total.count * 1000 if total.count else 0.0
                print(
                    f"| {route}, {cache} | {str(freeze).lower():<19} | {statistics.median(p99s):.1f} ms"
                    f" ({max(p99s):.1f} ms) | {total.count} | {mean_ms:.1f} ms | {total.longest()} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
