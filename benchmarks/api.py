"""API throughput and latency on 1,500 sensors in two cities and 30 days of hourly data, beside a trivial route of
the same server, with a key of every city and a key limited to one city.

    python -m benchmarks.api [--duration-s 10] [--connections 16] [--database-url URL]

What it does, in one run:
1. creates a scratch database on the PostgreSQL server in `--database-url` (default: LIVINGLAB_TEST_DATABASE_URL,
   else the local server), migrates it, and bulk-loads 1,000 sensors of Jakarta (600 air stations, 400 traffic
   counters in 20 districts) and 500 of Bandung (300 and 200 in 10 districts) with 30 days of hourly rows: `agg_1h`
   (two quantities per sensor), `ispu_hourly`, `aqi_hourly`, `traffic_hourly`, `service_hourly` and their
   `service_daily` rollups;
2. starts `livinglab api` twice as its own processes (one uvicorn worker each): as configured by default, and with
   the response cache off (`LIVINGLAB_RESPONSE_CACHE_S=0`, every request queries the database); drives them with
   `wrk` from another process;
3. per route, server and key: the most requests per second it sustains with `--connections` concurrent clients
   (closed loop) and the p50/p99 latency at that load; then the p50/p99 latency when paced at half that rate. The
   trivial route `GET /v1/version` (a constant, no key, no database) is measured the same way on the same server,
   first and last, and also in turn with each route's rounds, so each route is compared with a trivial rate taken
   within the same minute as well as with the first-and-last mean. Each route runs with a read key of every city
   asking for Jakarta (`?city=jakarta`) and a read key limited to Jakarta asking for no city (the key alone keeps
   the answer to Jakarta; both get the same answers, which the run checks first), in `--rounds` alternating rounds
   of a quarter of `--duration-s` each (ABBA order, so a shared machine getting busier or quieter shifts both
   alike; the median round counts); the cost of the city rule shows as the ratio of the two rates.

The aggregates runs rotate over 172 sensors' URLs; the others repeat one URL, as polling dashboards do. The data
routes go through authentication (a read key, cached after its first check), the rate limiter (with a
limit too high to trigger) and the database pool, as in production. Targets: each data route serves at least 25 %
of the trivial route's rate, with p99 under 50 ms at half its own rate; with the city-limited key, at least 90 % of
the rate with the key of every city. Besides the API process's CPU time per request, the CPU time of the PostgreSQL
backends serving its connections (PostgreSQL on this machine). Needs `wrk` (Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import psycopg

from livinglab.embedded import free_port
from livinglab.storage import migrate
from livinglab.storage.keys import Scope, create_key

SENSORS_AIR = 600
SENSORS_TRAFFIC = 400
DISTRICTS = 20
DAYS = 30
CITY = "jakarta"
#: The cities loaded: (city, sensor id prefix, air stations, traffic counters, districts). The routes ask for CITY.
CITIES = ((CITY, "", SENSORS_AIR, SENSORS_TRAFFIC, DISTRICTS), ("bandung", "bdg-", 300, 200, 10))

_WRK_SCRIPT = """
local paths = {%(paths)s}
local think_ms = %(think_ms)d
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
if think_ms > 0 then
  delay = function() return think_ms end
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d, "non2xx": %%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status))
end
"""


@dataclass(frozen=True)
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    #: CPU seconds the API process spent during the run (0 when not measured).
    server_cpu_s: float = 0.0
    #: CPU seconds the API process's PostgreSQL backends spent during the run (0 when not measured).
    db_cpu_s: float = 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def db_cpu_us_per_request(self) -> float:
        return self.db_cpu_s / self.requests * 1e6 if self.requests else float("nan")


def load_data(url: str, now: datetime) -> None:
    """Bulk-load the sensors and 30 days of hourly rows ending at the current hour, the air indices' labels running
    ahead of it as the processors write them (server-side SQL)."""
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DAYS)
    # A reading in hour h changes the ISPU labelled up to h + 24 h and the AQI up to h + 12 h (processing.hourly_air),
    # so the processors keep index rows that far ahead of the data: the current lists read past them.
    params = {"start": start, "hours": DAYS * 24, "ispu_hours": DAYS * 24 + 24, "aqi_hours": DAYS * 24 + 12}
    with psycopg.connect(url) as conn:
        for city, prefix, n_air, n_traffic, districts in CITIES:
            own = {**params, "city": city, "prefix": prefix, "districts": districts}
            conn.execute(
                "INSERT INTO sensors (sensor_id, city, district, kind, name, lat, lon, interval_s)"
                " SELECT format('%%saq-%%s', %(prefix)s::text, lpad(i::text, 4, '0')), %(city)s,"
                " format('District %%s', i %% %(districts)s), 'air', format('Station %%s', i), -6.2 + i * 1e-4, 106.8,"
                " 60 FROM generate_series(1, %(n)s) i",
                {**own, "n": n_air},
            )
            conn.execute(
                "INSERT INTO sensors (sensor_id, city, district, kind, name, lat, lon, interval_s, road_type, lanes,"
                " lane_width_m, road_function, city_population, side_friction_factor)"
                " SELECT format('%%stc-%%s', %(prefix)s::text, lpad(i::text, 4, '0')), %(city)s,"
                " format('District %%s', i %% %(districts)s), 'traffic', format('Counter %%s', i), -6.2,"
                " 106.8 + i * 1e-4, 300, '4/2-T', 2, 3.5, 'arteri_sekunder', 10000000, 1.0"
                " FROM generate_series(1, %(n)s) i",
                {**own, "n": n_traffic},
            )
            conn.execute(
                "INSERT INTO service_hourly (city, district, service, period_start, numerator, denominator)"
                " SELECT %(city)s, format('District %%s', d), sv, %(start)s + make_interval(hours => h),"
                " 20 + (h + d) %% 11, 30 FROM generate_series(0, %(districts)s - 1) d,"
                " unnest(ARRAY['air', 'traffic', 'data']) sv, generate_series(0, %(hours)s - 1) h",
                own,
            )
        # Two quantities per sensor: pm25/pm10 for air stations, sm/kr for traffic counters.
        conn.execute(
            "INSERT INTO agg_1h (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95,"
            " completeness) SELECT s.sensor_key, q.code, %(start)s + make_interval(hours => h), 60, 60 * v, v,"
            " v - 5, v + 5, v, v + 4, 1.0 FROM sensors s"
            " JOIN LATERAL (VALUES (CASE s.kind WHEN 'air' THEN 1 ELSE 101 END),"
            "  (CASE s.kind WHEN 'air' THEN 2 ELSE 102 END)) q(code) ON true,"
            " generate_series(0, %(hours)s - 1) h, LATERAL (SELECT 20 + (h %% 24) + s.sensor_key %% 7 AS v) x",
            params,
        )
        conn.execute(
            "INSERT INTO ispu_hourly (sensor_key, window_end, ispu, category, colour_hex, critical_parameter,"
            " sub_indices, hours_valid) SELECT s.sensor_key, %(start)s + make_interval(hours => h + 1), v,"
            " CASE WHEN v <= 50 THEN 'Baik' ELSE 'Sedang' END, CASE WHEN v <= 50 THEN '#00b050' ELSE '#0070c0' END,"
            " 'pm25', jsonb_build_object('pm25', v, 'pm10', v - 10, 'no2', 12), 24"
            " FROM sensors s, generate_series(0, %(ispu_hours)s - 1) h,"
            " LATERAL (SELECT 30 + (h * 7 + s.sensor_key) %% 60"
            " AS v) x WHERE s.kind = 'air'",
            params,
        )
        conn.execute(
            "INSERT INTO aqi_hourly (sensor_key, hour, aqi, category, dominant_pollutant, nowcast, sub_indices)"
            " SELECT s.sensor_key, %(start)s + make_interval(hours => h + 1), v, 'Moderate', 'pm25',"
            " jsonb_build_object('pm25', v / 3.0, 'pm10', v / 2.0), jsonb_build_object('pm25', v, 'pm10', v - 20)"
            " FROM sensors s, generate_series(0, %(aqi_hours)s - 1) h,"
            " LATERAL (SELECT 40 + (h * 5 + s.sensor_key) %% 70"
            " AS v) x WHERE s.kind = 'air'",
            params,
        )
        conn.execute(
            "INSERT INTO traffic_hourly (sensor_key, hour, flow_veh_h, flow_pcu_h, capacity_pcu_h,"
            " degree_of_saturation, los, los_target, los_met, mean_speed_kmh, completeness)"
            " SELECT s.sensor_key, %(start)s + make_interval(hours => h), f, f * 0.9, 5600, f * 0.9 / 5600,"
            " CASE WHEN f * 0.9 / 5600 < 0.6 THEN 'B' ELSE 'D' END, 'C', f * 0.9 / 5600 < 0.6, 38, 1.0"
            " FROM sensors s, generate_series(0, %(hours)s - 1) h,"
            " LATERAL (SELECT 1000 + ((h * 13 + s.sensor_key) %% 40) * 100 AS f) x WHERE s.kind = 'traffic'",
            params,
        )
        conn.execute(
            "INSERT INTO service_daily (city, district, service, period_start, numerator, denominator)"
            " SELECT city, district, service, date_trunc('day', period_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
            " sum(numerator), sum(denominator) FROM service_hourly GROUP BY 1, 2, 3, 4"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def row_counts(url: str) -> dict[str, int]:
    tables = ("sensors", "agg_1h", "ispu_hourly", "aqi_hourly", "traffic_hourly", "service_hourly", "service_daily")
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]


def run_wrk(base: str, paths: list[str], *, connections: int, duration_s: float, think_ms: int, key: str) -> Run:
    quoted = ", ".join(json.dumps(p) for p in paths)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % {"paths": quoted, "think_ms": think_ms})
        script = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "5s",
                "-H",
                f"Authorization: Bearer {key}",
                "-s",
                script,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + 60,
        ).stdout
    finally:
        os.unlink(script)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return Run(
        rate=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=r["errors"] + r["non2xx"],
        requests=r["requests"],
    )


def server_cpu_s(server: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user and system) the API process has used so far."""
    times = psutil.Process(server.pid).cpu_times()
    return float(times.user + times.system)


def backend_cpu_s(server: subprocess.Popen[bytes], url: str) -> dict[int, float]:
    """CPU seconds (user and system) used so far by each PostgreSQL backend serving the API process's connections
    (found by the client port of each of its connections; the server must run on this machine)."""
    ports = [c.laddr.port for c in psutil.Process(server.pid).net_connections(kind="tcp") if c.raddr]
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,))]
    used = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[pid] = float(times.user + times.system)
    return used


def start_server(url: str, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`livinglab api` in its own process (one uvicorn worker) on a free port; returns it and its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "LIVINGLAB_DATABASE_URL": url,
        "LIVINGLAB_LOG_LEVEL": "WARNING",
        # The limiter runs as in production, with a limit no benchmark client reaches.
        "LIVINGLAB_RATE_LIMIT_PER_S": "1000000000",
        "LIVINGLAB_RATE_LIMIT_BURST": "1000000000",
        **extra_env,
    }
    server = subprocess.Popen([sys.executable, "-m", "livinglab", "api", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/v1/version", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("the API server did not start")
        time.sleep(0.2)


def urls_for(key_label: str, paths: list[str]) -> list[str]:
    """The key of every city asks for CITY; the limited key asks for no city (its own is implied)."""
    if key_label == "every city":
        return paths
    return [p.replace(f"city={CITY}&", "").replace(f"?city={CITY}", "") for p in paths]


def combine(runs: list[Run]) -> Run:
    """Runs of the same load as one: the median rate, p50 and p99 (a neighbour's burst on a shared machine spoils a
    round or two, not the result), every error."""
    return Run(
        rate=statistics.median(r.rate for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        requests=sum(r.requests for r in runs),
        server_cpu_s=sum(r.server_cpu_s for r in runs),
        db_cpu_s=sum(r.db_cpu_s for r in runs),
    )


AGGREGATES = "GET /v1/sensors/{id}/aggregates"
SERVICE_LEVELS = "GET /v1/service-levels (30 days)"


def route_paths(now: datetime) -> dict[str, list[str]]:
    """The URLs of each data route: the aggregates route rotates over 172 sensors, the others repeat one URL."""
    month_start = (now - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    month_end = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    sensors = [f"aq-{i:04d}" for i in range(1, SENSORS_AIR + 1, 7)] + [
        f"tc-{i:04d}" for i in range(1, SENSORS_TRAFFIC + 1, 5)
    ]
    return {
        "GET /v1/air/ispu": [f"/v1/air/ispu?city={CITY}&limit=100"],
        "GET /v1/traffic/segments": [f"/v1/traffic/segments?city={CITY}&limit=100"],
        AGGREGATES: [
            f"/v1/sensors/{s}/aggregates?window=1h&start={month_start}&end={month_end}&limit=100" for s in sensors
        ],
        SERVICE_LEVELS: [f"/v1/service-levels?city={CITY}&start={month_start}&end={month_end}"],
    }


def paced(base: str, paths: list[str], target_rate: float, *, duration_s: float, key: str) -> Run:
    """About `target_rate` requests/s: clients that each wait `_THINK_MS` between requests (a closed loop with think
    time; the achieved rate is measured and printed, not assumed)."""
    connections = max(1, round(target_rate * (_THINK_MS + 2) / 1000))
    return run_wrk(base, paths, connections=connections, duration_s=duration_s, think_ms=_THINK_MS, key=key)


_THINK_MS = 50


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LIVINGLAB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a database on the PostgreSQL server to use (default: LIVINGLAB_TEST_DATABASE_URL, else the local one)",
    )


def wrk_missing() -> bool:
    """True, after saying so, when `wrk` is not installed."""
    if shutil.which("wrk") is not None:
        return False
    print("wrk is not installed (Debian: apt install wrk)", file=sys.stderr)
    return True


@contextmanager
def loaded_database(server_url: str, prefix: str, now: datetime) -> Iterator[str]:
    """A scratch database on the server of `server_url`, migrated and loaded with the data as of `now`
    (`load_data`); dropped at the end."""
    from livinglab.launch import create_database, drop_database, unique_name

    name = unique_name(prefix)
    url = create_database(server_url, name)
    try:
        migrate(url)
        started = time.perf_counter()
        load_data(url, now)
        print(f"loaded in {time.perf_counter() - started:.1f} s: {row_counts(url)}")
        yield url
    finally:
        drop_database(server_url, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_url(parser)
    parser.add_argument("--duration-s", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients for the maximum rate")
    parser.add_argument(
        "--rounds", type=int, default=8, help="alternating rounds of a quarter of --duration-s, per key and route"
    )
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    now = datetime.now(UTC)
    with loaded_database(args.database_url, "llbench_api", now) as url:
        _run(args, url, now)
    return 0


def _run(args: argparse.Namespace, url: str, now: datetime) -> None:
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        with psycopg.connect(url) as conn:
            keys = {
                "every city": create_key(conn, Scope.READ, name="bench"),
                f"{CITY} only": create_key(conn, Scope.READ, name="bench-city", cities=[CITY]),
            }
            conn.commit()
        key = keys["every city"]

        servers["cache on"] = start_server(url, {})
        servers["cache off"] = start_server(url, {"LIVINGLAB_RESPONSE_CACHE_S": "0"})
        trivial_label = "GET /v1/version (trivial)"
        routes = {trivial_label: ["/v1/version"], **route_paths(now)}
        base = servers["cache on"][1]
        # Sanity: every route answers 200 with the expected page size before it is timed, the same to both keys
        # (the limited key's URLs leave the city out: the key alone keeps the answer to its city).
        for label, paths in routes.items():
            for _, server_base in servers.values():
                answers = []
                for key_label, each in keys.items():
                    response = httpx.get(
                        server_base + urls_for(key_label, paths)[0],
                        headers={"Authorization": f"Bearer {each}"},
                        timeout=10,
                    )
                    response.raise_for_status()
                    answers.append(response.json())
                if answers[0] != answers[1]:
                    raise RuntimeError(f"{label}: the two keys got different answers")
            items = response.json().get("items")
            print(f"  {label}: {len(items) if items is not None else '-'} items per response")

        def measure(server_base: str, paths: list[str], key: str = key) -> tuple[Run, Run]:
            full = run_wrk(
                server_base, paths, connections=args.connections, duration_s=args.duration_s, think_ms=0, key=key
            )
            return full, paced(server_base, paths, full.rate / 2, duration_s=args.duration_s, key=key)

        def measure_keys(
            server: subprocess.Popen[bytes], server_base: str, paths: list[str]
        ) -> tuple[dict[str, tuple[Run, Run]], float]:
            """Both keys in alternating rounds (ABBA), so a machine that gets busier or quieter during the
            measurement shifts both alike; each key's rate is the median of its rounds. The API process's own CPU
            time per request is measured too: neighbours on the machine slow it down, but hardly change it. The
            trivial route of the same server takes its turn in the same rounds; the median of its rates is returned
            as the baseline this route is compared with, measured within the same minute."""
            rounds: dict[str, list[Run]] = {label: [] for label in keys}
            trivial_rounds: list[Run] = []
            turns: list[tuple[str | None, str]] = [(None, key), *keys.items()]
            for i in range(args.rounds):
                for label, each in turns if i % 2 == 0 else list(reversed(turns)):
                    cpu_before = server_cpu_s(server)
                    db_before = backend_cpu_s(server, url)
                    run = run_wrk(
                        server_base,
                        routes[trivial_label] if label is None else urls_for(label, paths),
                        connections=args.connections,
                        duration_s=args.duration_s / 4,
                        think_ms=0,
                        key=each,
                    )
                    cpu = server_cpu_s(server) - cpu_before
                    # A backend opened during the run counts from its start.
                    db = sum(t - db_before.get(pid, 0.0) for pid, t in backend_cpu_s(server, url).items())
                    (trivial_rounds if label is None else rounds[label]).append(
                        dataclasses.replace(run, server_cpu_s=cpu, db_cpu_s=db)
                    )
            measured = {}
            for label, each in keys.items():
                full = combine(rounds[label])
                own = urls_for(label, paths)
                measured[label] = full, paced(server_base, own, full.rate / 2, duration_s=args.duration_s, key=each)
            return measured, combine(trivial_rounds).rate

        results: dict[str, tuple[Run, Run]] = {trivial_label: measure(base, routes[trivial_label])}
        #: Per result row, the trivial route's rate measured in the same rounds (see measure_keys).
        adjacent: dict[str, float] = {}
        for label, paths in routes.items():
            if label == trivial_label:
                continue
            for config, (server, server_base) in servers.items():
                measured, trivial_rate = measure_keys(server, server_base, paths)
                for key_label, pair in measured.items():
                    results[f"{label}, {config}, {key_label}"] = pair
                    adjacent[f"{label}, {config}, {key_label}"] = trivial_rate
        # The baseline again at the end, to see drift on a shared machine.
        results[trivial_label + " again"] = measure(base, routes[trivial_label])

        baseline = (results[trivial_label][0].rate + results[trivial_label + " again"][0].rate) / 2
        print()
        print(
            f"1 uvicorn worker, wrk -t1 -c{args.connections}, {args.duration_s:.0f} s per run, 2 cores shared "
            f"by PostgreSQL, the server and wrk"
        )
        header = (
            f"| {'route':<62} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'vs trivial':>10} | "
            f"{'trivial, same rounds':>20} | {'vs it':>5} | "
            f"{'vs every-city key':>17} | {'API CPU us/req':>14} | {'DB CPU us/req':>13} | {'CPU vs every-city':>17} | "
            f"{'paced req/s':>11} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |"
        )
        print(header)
        print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
        for label, (full, half) in results.items():
            unlimited = results.get(label.replace(f"{CITY} only", "every city"))
            limited = label.endswith(f"{CITY} only") and unlimited is not None
            versus = f"{full.rate / unlimited[0].rate:.0%}" if limited and unlimited else ""
            cpu = f"{full.cpu_us_per_request:.0f}" if full.server_cpu_s else ""
            db_cpu = f"{full.db_cpu_us_per_request:.0f}" if full.server_cpu_s else ""
            cpu_versus = (
                f"{full.cpu_us_per_request / unlimited[0].cpu_us_per_request:.0%}" if limited and unlimited else ""
            )
            beside = adjacent.get(label)
            beside_rate = f"{beside:.0f}" if beside else ""
            beside_share = f"{full.rate / beside:.0%}" if beside else ""
            print(
                f"| {label:<62} | {full.rate:>8.0f} | {full.p50_ms:>7.2f} | {full.p99_ms:>7.2f} | "
                f"{full.rate / baseline:>9.0%} | {beside_rate:>20} | {beside_share:>5} | "
                f"{versus:>17} | {cpu:>14} | {db_cpu:>13} | {cpu_versus:>17} | "
                f"{half.rate:>11.0f} | {half.p50_ms:>7.2f} | {half.p99_ms:>7.2f} | {full.errors + half.errors:>6} |"
            )
        print(
            f"\nbaseline (trivial route, mean of first and last run): {baseline:.0f} req/s; 'trivial, same rounds':"
            " the trivial route of the same server measured in turn with the route's own rounds, and 'vs it' the"
            " route's rate against that (steadier than the first-and-last baseline on a machine whose load drifts);"
            " targets: >= 25 % of it, p99 < 50 ms when paced at half the route's own rate, and with the key limited "
            f"to {CITY} >= 90 % of the rate with the key of every city (and at most 110 % of its API CPU per request)"
        )
    finally:
        for server, _ in servers.values():
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
