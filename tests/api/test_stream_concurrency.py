"""Three processors write events at once while five SSE clients follow the stream, four of them dropping their
connection every second or two and resuming with `Last-Event-ID`: every client gets every event id exactly once,
in order, and the events it gets are the ones the table holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from processing import Processor, ProcessorSettings
from tests.support.api import make_keys, serving
from tests.support.city_load import CityLoad, idle, register_city, rows
from tests.support.roles import running, wait_until
from tests.support.sse import FeedClient, check_exactly_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_S = 8


def _processor(url: str, worker: str) -> Processor:
    # Small batches and no rollup delay: many short rounds from every processor, committing in any order.
    return Processor(
        ProcessorSettings(
            database_url=url,
            worker_id=worker,
            claim_batch=12,
            rollup_batch=6,
            hour_rollup_delay_s=0,
            day_rollup_delay_s=0,
            rollup_interval_s=0.05,
            poll_interval_s=0.2,
            tally_interval_s=1,
        )
    )


@pytest.fixture
def clients(fresh_database_url: str) -> Iterator[list[FeedClient]]:
    headers = make_keys(fresh_database_url).header()
    with serving(fresh_database_url, sse_heartbeat_s=0.5) as base:
        made = [FeedClient(base, headers, reconnect_every_s=None if i == 0 else 1.5, seed=i).start() for i in range(5)]
        try:
            yield made
        finally:
            for client in made:
                client.stop()


def test_every_client_gets_every_event_once_in_order(fresh_database_url: str, clients: list[FeedClient]) -> None:
    url = fresh_database_url
    load = CityLoad(url, register_city(url, stations_per_district=2), tick_s=0.1)
    processors = [_processor(url, f"p{i}") for i in (1, 2, 3)]
    wait_until(lambda: all(c.first_position is not None for c in clients), timeout_s=30)
    with running(*processors):
        load.start()
        try:
            time.sleep(RUN_S)
        finally:
            load.stop()
        wait_until(lambda: idle(url), timeout_s=60, interval_s=0.2)
    stored = [r[0] for r in rows(url, "SELECT id FROM events ORDER BY id")]
    wait_until(lambda: all(c.last_id == stored[-1] for c in clients), timeout_s=30)
    # While events flow a client may never sit idle for a heartbeat's interval; now that the feed is quiet, each one
    # gets heartbeats whether the database is asked or not.
    wait_until(lambda: all(c.heartbeats for c in clients), timeout_s=30)

    assert len(stored) > 300, len(stored)
    assert all(p.windows > 0 for p in processors), [p.windows for p in processors]
    for n, client in enumerate(clients):
        missing, repeated = check_exactly_once(client, stored)
        assert (missing, repeated) == (0, 0), (n, missing, repeated)
        assert all(r.status == 200 for r in client.responses)
        if n:
            # It left and came back many times, resuming from its last id each time.
            assert sum(r.ending == "left" for r in client.responses) >= RUN_S // 3
