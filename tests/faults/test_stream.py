"""The live stream while the API's database link is blackholed.

A processor keeps writing events (straight to the database) under a steady two-city load; three SSE clients follow
`/v1/stream` through an API whose database link runs through the fault proxy. When the link goes silent, the
clients must go on getting heartbeats, `/v1/health` must report the event feed as down, and every open stream must
end cleanly (a proper end of the response, not a cut connection); meanwhile new streams are refused with 503. Once
the link is back, the clients resume with `Last-Event-ID`, and in the end every client has every event exactly once,
in order.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest

from processing import Processor, ProcessorSettings
from tests.support.api import make_keys, serving
from tests.support.city_load import CityLoad, idle, register_city
from tests.support.faults import FaultTable, Recovery
from tests.support.proxy import FaultProxy
from tests.support.roles import Background, rows, running, wait_until
from tests.support.sse import FeedClient, check_exactly_once

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

STATEMENT_TIMEOUT_MS = 1000
GRACE_S = 1.0
HEARTBEAT_S = 0.5
OUTAGE_S = 5.0


class HealthWatch(Background):
    """Polls `/v1/health` and keeps (time answered, status of the events check)."""

    def __init__(self, base: str) -> None:
        super().__init__("health-watch")
        self.base = base
        self.seen: list[tuple[float, str]] = []

    def loop(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self.stopping.wait(0.1):
                answer = http.get("/v1/health")
                self.seen.append((time.monotonic(), answer.json()["checks"]["events"]["status"]))

    def first(self, status: str, after: float) -> float | None:
        return next((t for t, s in self.seen if s == status and t >= after), None)

    def __enter__(self) -> HealthWatch:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _open_at(client: FeedClient, moment: float) -> int | None:
    """The index of the client's response that was open at `moment`."""
    return next(
        (i for i, r in enumerate(client.responses) if r.opened_at <= moment and (r.ended_at or moment + 1) > moment),
        None,
    )


def test_api_database_link_blackhole(fresh_database_url: str, fault_table: FaultTable) -> None:
    url = fresh_database_url
    headers = make_keys(url).header()
    load = CityLoad(url, register_city(url), tick_s=0.2)
    processor = Processor(
        ProcessorSettings(database_url=url, worker_id="p1", hour_rollup_delay_s=0, day_rollup_delay_s=0)
    )
    api_settings = {
        "statement_timeout_ms": STATEMENT_TIMEOUT_MS,
        "database_grace_s": GRACE_S,
        "pool_timeout_s": 1.0,
        "sse_heartbeat_s": HEARTBEAT_S,
    }
    with (
        FaultProxy(int(urlsplit(url).port or 5432)) as proxy,
        serving(proxy.route(url), **api_settings) as base,
        HealthWatch(base) as health,
        running(processor),
    ):
        clients = [FeedClient(base, headers, seed=i).start() for i in range(3)]
        try:
            load.start()
            wait_until(lambda: all(c.ids for c in clients), timeout_s=60)
            broken = time.monotonic()
            proxy.blackhole()
            wait_until(lambda: health.first("down", broken), timeout_s=30)
            ended = [
                wait_until(lambda c=c: c.responses[_open_at(c, broken) or 0].ended_at, timeout_s=30) for c in clients
            ]
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - broken)))
            refused = sum(r.status == 503 for c in clients for r in c.responses)
            proxy.pass_through()
            healed = time.monotonic()
            at_heal = rows(url, "SELECT coalesce(max(id), 0) FROM events")[0][0]
            wait_until(lambda: all((c.last_id or 0) >= at_heal for c in clients), timeout_s=60)
            caught_up_s = time.monotonic() - healed
            wait_until(lambda: health.first("ok", healed), timeout_s=30)
        finally:
            load.stop()
        try:
            wait_until(lambda: idle(url), timeout_s=60, interval_s=0.2)
            stored = [r[0] for r in rows(url, "SELECT id FROM events ORDER BY id")]
            wait_until(lambda: all(c.last_id == stored[-1] for c in clients), timeout_s=30)
        finally:
            for client in clients:
                client.stop()

    detected_s = (health.first("down", broken) or broken) - broken
    endings = [c.responses[_open_at(c, broken) or 0] for c in clients]
    beats = [
        sum(broken <= t <= r.ended_at for t in c.heartbeats)
        for c, r in zip(clients, endings, strict=True)
        if r.ended_at
    ]
    missing = repeated = 0
    for client in clients:
        m, r = check_exactly_once(client, stored)
        missing, repeated = missing + m, repeated + r
    fault_table.record_recovery(
        Recovery(
            "API-database link blackhole (SSE stream)",
            detected_s,
            caught_up_s,
            f"{len(stored):,} events x {len(clients)} clients",
            missing,
            repeated,
            note=f"link down {healed - broken:.1f} s; streams ended cleanly {min(ended) - broken:.1f}-"
            f"{max(ended) - broken:.1f} s after the break, after {min(beats)}-{max(beats)} heartbeats;"
            f" {refused} reconnects refused with 503 meanwhile; deadline {STATEMENT_TIMEOUT_MS / 1000 + GRACE_S:.0f} s",
        )
    )
    assert [r.ending for r in endings] == ["clean"] * len(clients)
    assert min(beats) > 0  # heartbeats went on while the database was unreachable
    assert refused > 0
