"""One phase of the event-feed stress run: a scratch database, the load, N processors, the API and the clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import httpx
import numpy as np

from livinglab.embedded import free_port
from livinglab.launch import RoleProcess, drop_database, scratch_database, started
from tests.support.city_load import CityLoad, differing, idle, recompute, register_city, snapshot
from tests.support.roles import rows, wait_until
from tests.support.sse import FeedClient, check_exactly_once

#: Settings of every role of a phase: hours and days computed at once, so every round writes events.
_ROLES = {
    "LIVINGLAB_LOG_LEVEL": "INFO",
    "LIVINGLAB_HOUR_ROLLUP_DELAY_S": "0",
    "LIVINGLAB_DAY_ROLLUP_DELAY_S": "0",
    "LIVINGLAB_TALLY_INTERVAL_S": "5",
    "LIVINGLAB_PUBLIC_READ": "true",
    "LIVINGLAB_RATE_LIMIT_PER_S": "0",
    "LIVINGLAB_SSE_HEARTBEAT_S": "5",
}


@dataclass(frozen=True, slots=True)
class Options:
    processors: int
    duration_s: float
    clients: int
    #: Clients after the first two drop their stream about this often and resume with Last-Event-ID.
    reconnect_every_s: float
    stations_per_district: int
    tick_s: float
    clean_check: bool


@dataclass(frozen=True, slots=True)
class ClientResult:
    kind: str
    received: int
    missing: int
    repeated: int
    responses: int
    delays_s: list[float]


@dataclass(slots=True)
class PhaseResult:
    options: Options
    events: int = 0
    seconds: float = 0.0
    readings: int = 0
    windows: int = 0
    clients: list[ClientResult] = field(default_factory=list)
    #: Rows differing from a clean run over the same readings (None when not checked).
    differing: int | None = None
    result_rows: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")

    def delays(self) -> np.ndarray:
        return np.array([d for c in self.clients for d in c.delays_s]) if self.clients else np.array([])


def _client_result(client: FeedClient, kind: str, stored: list[tuple[int, str, float]]) -> ClientResult:
    wanted = [i for i, t, _ in stored if kind == "all" or t == kind.removeprefix("types=")]
    missing, repeated = check_exactly_once(client, wanted)
    created = {i: at for i, _, at in stored}
    delays = [at - created[i] for i, at in zip(client.ids, client.received_at, strict=True) if i in created]
    return ClientResult(kind, len(client.ids), missing, repeated, len(client.responses), delays)


def run_phase(server_url: str, options: Options, log_dir: Path, out: TextIO, label: str) -> PhaseResult:
    """Run one phase and return its figures; prints progress to `out`."""
    result = PhaseResult(options)
    name, url = scratch_database(server_url, "bench_events")
    try:
        sensors = register_city(url, stations_per_district=options.stations_per_district)
        port = free_port()
        settings = {**_ROLES, "LIVINGLAB_DATABASE_URL": url}
        api = RoleProcess("api", {**settings, "LIVINGLAB_API_PORT": str(port)}, log_dir, name=f"{label}-api")
        processors = [
            RoleProcess("process", {**settings, "LIVINGLAB_WORKER_ID": f"p{i + 1}"}, log_dir, name=f"{label}-p{i + 1}")
            for i in range(options.processors)
        ]
        base = f"http://127.0.0.1:{port}"
        with started(api, *processors):
            wait_until(lambda: _up(base), timeout_s=120, interval_s=0.5)
            kinds = ["all", "types=aggregates", *["all"] * max(0, options.clients - 2)]
            clients = [
                FeedClient(
                    base,
                    {},
                    reconnect_every_s=options.reconnect_every_s if i >= 2 else None,
                    retry_s=1.0,
                    seed=i,
                    params={"types": kind.removeprefix("types=")} if kind != "all" else None,
                ).start()
                for i, kind in enumerate(kinds[: options.clients])
            ]
            try:
                wait_until(lambda: all(c.first_position is not None for c in clients), timeout_s=60)
                start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=3)
                load = CityLoad(url, sensors, start=start, tick_s=options.tick_s).start()
                began = time.monotonic()
                _watch(url, began, options.duration_s, clients, out, label)
                load.stop()
                result.readings = load.readings
                wait_until(lambda: idle(url), timeout_s=600, interval_s=1.0)
                result.seconds = time.monotonic() - began
                last = dict(rows(url, "SELECT type, max(id) FROM events GROUP BY type"))
                ends = [
                    max(last.values(), default=0) if k == "all" else last.get(k.removeprefix("types="), 0)
                    for k in kinds
                ]
                wait_until(
                    lambda: all((c.last_id or 0) >= end for c, end in zip(clients, ends, strict=False)),
                    timeout_s=120,
                    interval_s=0.5,
                )
            finally:
                for client in clients:
                    client.stop()
        stored = [
            (int(i), t, at.timestamp()) for i, t, at in rows(url, "SELECT id, type, created_at FROM events ORDER BY id")
        ]
        result.events = len(stored)
        result.windows = int(rows(url, "SELECT count(*) FROM agg_1m")[0][0])
        result.clients = [_client_result(c, k, stored) for c, k in zip(clients, kinds, strict=False)]
        if options.clean_check:
            faulted = snapshot(url)
            result.result_rows = sum(len(v) for v in faulted.values())
            result.differing = differing(faulted, recompute(url))
    finally:
        drop_database(server_url, name)
    return result


def _up(base: str) -> bool:
    try:
        answer = httpx.get(f"{base}/v1/health", timeout=5)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and answer.json()["checks"]["events"]["status"] == "ok"


def _watch(url: str, began: float, duration_s: float, clients: list[FeedClient], out: TextIO, label: str) -> None:
    count: Callable[[], int] = lambda: int(rows(url, "SELECT count(*) FROM events")[0][0])  # noqa: E731
    next_report = began + 30.0
    while (now := time.monotonic()) < began + duration_s:
        time.sleep(min(1.0, began + duration_s - now))
        if time.monotonic() >= next_report:
            received = ", ".join(str(len(c.ids)) for c in clients)
            print(
                f"  {label} {time.monotonic() - began:5.0f} s: {count():,} events; clients received {received}",
                file=out,
            )
            out.flush()
            next_report += 30.0
