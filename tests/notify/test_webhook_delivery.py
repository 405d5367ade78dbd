"""Webhook deliveries by a real deliverer process (`livinglab notify`) to a real HTTP receiver on loopback: at least
once through a receiver that is down, answers 500 or does not answer in time, through kill -9 of the deliverer,
and with two deliverers sharing the outbox; signed with the channel's secret."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from livinglab.launch import RoleProcess
from livinglab.notifications import signature_valid
from tests.support.notify import (
    WebhookReceiver,
    create_channel,
    deliveries,
    queue_events,
    receiving,
    wait_for_delivery,
    wait_until_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "the-receivers-shared-secret-0123456789"

DelivererFactory = Callable[..., RoleProcess]


@pytest.fixture
def deliverer(fresh_database_url: str, tmp_path: Path) -> Iterator[DelivererFactory]:
    """Start `livinglab notify` processes on the test's database (stopped at the end)."""
    started: list[RoleProcess] = []

    def start(worker_id: str = "notify-test-1", **settings: str) -> RoleProcess:
        env = {
            "LIVINGLAB_DATABASE_URL": fresh_database_url,
            "LIVINGLAB_LOG_LEVEL": "INFO",
            "LIVINGLAB_NOTIFY_WORKER_ID": worker_id,
            "LIVINGLAB_RETRY_FIRST_S": "0.5",
            "LIVINGLAB_RETRY_MAX_S": "2",
            "LIVINGLAB_NOTIFY_POLL_INTERVAL_S": "1",
            **settings,
        }
        process = RoleProcess("notify", env, tmp_path, name=f"{worker_id}-{len(started)}")
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def _webhook(url: str, receiver: WebhookReceiver) -> str:
    with psycopg.connect(url) as conn:
        return create_channel(conn, "webhook", {"url": receiver.url, "secret": SECRET})


def _check_signed(receiver: WebhookReceiver) -> None:
    for request in receiver.requests:
        assert signature_valid(SECRET, request.body, request.signature), f"bad signature on {request.delivery_id}"
        assert request.headers["Content-Type"] == "application/json"


def test_a_receiver_down_then_failing_gets_every_event_once_per_delivery_id(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    """Down for 30 s, then 500 three times for each delivery, then 200: each delivery id accepted exactly once,
    every request signed, the payload exactly the queued one."""

    def answer(_delivery_id: str, seen: int) -> tuple[int, float]:
        return (500 if seen < 3 else 200), 0.0

    with receiving(answer, start=False) as receiver:
        channel = _webhook(fresh_database_url, receiver)
        ids = queue_events(fresh_database_url, [channel], 6)
        process = deliverer()
        # Connections are refused until the receiver starts; attempts pile up in the log meanwhile.
        down_until = time.monotonic() + 30
        while time.monotonic() < down_until:
            assert process.running, process.log_tail()
            time.sleep(1)
        deadline_rows = deliveries(fresh_database_url, ids)
        assert all(r["status"] == "pending" for r in deadline_rows.values())
        assert all(r["attempts"] >= 2 for r in deadline_rows.values()), deadline_rows
        assert all("cannot connect" in (r["last_error"] or "") for r in deadline_rows.values()), deadline_rows
        receiver.start()
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=120)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert receiver.accepted() == dict.fromkeys(ids, 1), "each delivery id accepted exactly once"
    per_id = {i: [r.status for r in receiver.requests if r.delivery_id == i] for i in ids}
    assert all(statuses == [500, 500, 500, 200] for statuses in per_id.values()), per_id
    _check_signed(receiver)
    for request in receiver.requests:
        payload = json.loads(request.body)
        assert set(payload) == {"event", "alarm"}
        assert payload["event"] == "raised"
        assert payload["alarm"]["rule_id"] == "ispu-high"
    assert all(rows[i]["attempts"] >= 5 for i in ids)


def test_a_receiver_that_does_not_answer_in_time_gets_the_event_again(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    def answer(_delivery_id: str, seen: int) -> tuple[int, float]:
        return 200, (3.0 if seen == 0 else 0.0)  # the first attempt outlasts the deliverer's timeout

    with receiving(answer) as receiver:
        channel = _webhook(fresh_database_url, receiver)
        ids = queue_events(fresh_database_url, [channel], 2)
        deliverer(LIVINGLAB_WEBHOOK_TIMEOUT_S="1")
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
        receiver.wait_for(lambda r: len(r.requests) >= 4, 30, "both attempts of each delivery")
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert {i: rows[i]["attempts"] for i in ids} == dict.fromkeys(ids, 2)
    # Each delivery was sent twice: the first answer came after the deliverer had hung up, so it counted only the
    # second.
    assert sorted(receiver.arrivals) == sorted(ids * 2)
    _check_signed(receiver)


def test_kill_9_of_the_deliverer_between_the_event_and_its_delivery_loses_nothing(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    """The receiver holds every request until the deliverer is killed; a new run under the same worker id takes
    the deliveries back at once and delivers them all."""
    gate = threading.Event()

    def answer(_delivery_id: str, seen: int) -> tuple[int, float]:
        if seen == 0:
            gate.wait(60)  # held while the deliverer dies; the answer goes to a closed connection
        return 200, 0.0

    with receiving(answer) as receiver:
        channel = _webhook(fresh_database_url, receiver)
        first = deliverer(LIVINGLAB_NOTIFY_LEASE_S="600")  # only the restart can hand the rows back in time
        ids = queue_events(fresh_database_url, [channel], 8)
        receiver.wait_for(lambda r: len(r.arrivals) >= len(ids), 30, "every delivery under way")
        assert all(r["claimed_by"] == "notify-test-1" for r in deliveries(fresh_database_url, ids).values())
        first.kill()
        gate.set()
        assert all(r["status"] == "pending" for r in deliveries(fresh_database_url, ids).values())
        deliverer()  # the same worker id
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert {i: rows[i]["attempts"] for i in ids} == dict.fromkeys(ids, 2), "the killed attempt counts as one"
    assert sorted(receiver.arrivals) == sorted(ids * 2), "each event sent again after the restart"
    _check_signed(receiver)


def test_two_deliverers_share_the_outbox_and_deliver_each_event_once(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    with receiving() as receiver:
        channel = _webhook(fresh_database_url, receiver)
        deliverer("notify-a")
        deliverer("notify-b")
        ids = queue_events(fresh_database_url, [channel], 60)
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert receiver.accepted() == dict.fromkeys(ids, 1)
    assert len(receiver.requests) == len(ids)


def test_a_channel_of_another_city_refuses_the_alarm_and_an_old_delivery_fails(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    def refuse(_delivery_id: str, _seen: int) -> tuple[int, float]:
        return 503, 0.0

    with receiving(refuse) as receiver:
        with psycopg.connect(fresh_database_url) as conn:
            bandung = create_channel(conn, "webhook", {"url": receiver.url, "secret": SECRET}, cities=["bandung"])
        other_city = queue_events(fresh_database_url, [bandung], 1, city="jakarta")
        old = queue_events(fresh_database_url, [_webhook(fresh_database_url, receiver)], 1, created_ago_s=86_401)
        deliverer()
        rows = wait_until_settled(fresh_database_url, other_city + old, timeout_s=60)
    assert rows[other_city[0]]["status"] == "failed"
    assert "channel carries bandung only" in rows[other_city[0]]["last_error"]
    assert not any(r.delivery_id == other_city[0] for r in receiver.requests), "never sent"
    assert rows[old[0]]["status"] == "failed"
    assert rows[old[0]]["last_error"] == "the receiver answered HTTP 503"
    assert rows[old[0]]["attempts"] == 1


def test_allowed_networks_refuse_other_addresses_and_pin_the_checked_one(
    fresh_database_url: str, deliverer: DelivererFactory
) -> None:
    """The receiver is named `localhost`: allowed when loopback is, with the request sent to the checked address
    and the name kept in Host; refused (and retried, with the reason) when only another address
    (127.0.0.2, which `localhost` does not resolve to) is."""
    with receiving() as receiver:
        named = receiver.url.replace("127.0.0.1", "localhost")
        with psycopg.connect(fresh_database_url) as conn:
            channel = create_channel(conn, "webhook", {"url": named, "secret": SECRET})
        ids = queue_events(fresh_database_url, [channel], 1)
        refusing = deliverer("notify-strict", LIVINGLAB_NOTIFY_ALLOWED_NETWORKS="127.0.0.2")
        row = wait_for_delivery(fresh_database_url, ids[0], lambda r: r["last_error"] is not None)
        refusing.stop()
        assert row["status"] == "pending"
        assert "outside LIVINGLAB_NOTIFY_ALLOWED_NETWORKS" in row["last_error"]
        assert receiver.arrivals == [], "nothing was sent to a refused address"
        deliverer("notify-loopback", LIVINGLAB_NOTIFY_ALLOWED_NETWORKS="127.0.0.0/8, ::1")
        rows = wait_until_settled(fresh_database_url, ids, timeout_s=60)
    assert rows[ids[0]]["status"] == "delivered"
    assert receiver.requests[-1].headers["Host"] == f"localhost:{receiver.port}"
    _check_signed(receiver)
