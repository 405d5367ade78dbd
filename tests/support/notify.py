"""Real counterparts of the deliverer on loopback, and alarm events queued the way the evaluator queues them.

`WebhookReceiver` is an HTTP server (http.server, one thread per request) on a free 127.0.0.1 port that records
every request and answers as its `answer` function says (status, and a delay before answering). `queue_events`
writes a rule, a sensor, an alarm and one outbox row per event in one transaction with NOTIFY, as the alarm
evaluator does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from livinglab.embedded import LOOPBACK, free_port
from livinglab.notifications import CHANNEL_DELIVERIES, DELIVERY_HEADER, SIGNATURE_HEADER
from tests.support import sensors


@dataclass(frozen=True)
class Request:
    delivery_id: str
    signature: str
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered (0: it held the request and never answered)
    received_at: float  # time.time() when the request had arrived in full


#: (delivery id, how many requests of that id came before) -> (status, seconds to wait before answering)
Answer = Callable[[str, int], tuple[int, float]]


def always_ok(_delivery_id: str, _seen: int) -> tuple[int, float]:
    return 200, 0.0


@dataclass
class WebhookReceiver:
    """An HTTP receiver on `port` (free until `start()`: a receiver that is down refuses connections)."""

    answer: Answer = always_ok
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    #: Delivery ids of requests as they arrive (before they are answered).
    arrivals: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as production receivers answer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received_at = time.time()
                delivery_id = self.headers.get(DELIVERY_HEADER, "")
                with receiver._changed:
                    with receiver._lock:
                        seen = receiver.arrivals.count(delivery_id)
                        receiver.arrivals.append(delivery_id)
                    receiver._changed.notify_all()
                status, delay_s = receiver.answer(delivery_id, seen)
                if delay_s:
                    time.sleep(delay_s)
                answered = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the deliverer gave up on us (timeout) or died
                    answered = 0
                receiver._record(
                    Request(
                        delivery_id,
                        self.headers.get(SIGNATURE_HEADER, ""),
                        body,
                        dict(self.headers),
                        answered,
                        received_at,
                    )
                )

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()

    def _record(self, request: Request) -> None:
        with self._changed:
            with self._lock:
                self.requests.append(request)
            self._changed.notify_all()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> dict[str, int]:
        """How many times each delivery id was answered with a 2xx."""
        counts: dict[str, int] = {}
        with self._lock:
            for r in self.requests:
                if 200 <= r.status < 300:
                    counts[r.delivery_id] = counts.get(r.delivery_id, 0) + 1
        return counts

    def wait_for(self, condition: Callable[[WebhookReceiver], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the receiver did not see {what} within {timeout_s:.0f} s")
                self._changed.wait(min(left, 0.5))


@contextmanager
def receiving(answer: Answer = always_ok, *, start: bool = True) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(answer)
    if start:
        receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def create_channel(conn: psycopg.Connection[Any], channel_type: str, config: dict[str, Any], **extra: Any) -> str:
    channel_id = f"ch-{uuid.uuid4().hex[:8]}"
    conn.execute(
        "INSERT INTO notification_channels (channel_id, type, name, cities, config) VALUES (%s, %s, %s, %s, %s)",
        (channel_id, channel_type, channel_id, extra.get("cities", []), Jsonb(config)),
    )
    conn.commit()
    return channel_id


def alarm_payload(event: str, alarm_id: int, sensor_id: str, city: str, value: float) -> dict[str, Any]:
    return {
        "event": event,
        "alarm": {
            "alarm_id": alarm_id,
            "rule_id": "ispu-high",
            "sensor_id": sensor_id,
            "city": city,
            "district": "Menteng",
            "severity": "warning",
            "state": "active" if event == "raised" else event,
            "raised_at": "2026-12-03T01:00:00Z",
            "value": value,
            "last_value": value,
            "acknowledged_at": None,
            "note": None,
            "cleared_at": None,
        },
    }


def queue_events(
    url: str, channel_ids: list[str], count: int, *, city: str = "jakarta", created_ago_s: float = 0.0
) -> list[str]:
    """`count` raised alarms (each of its own sensor), one delivery per alarm and channel, queued in one
    transaction with NOTIFY; returns the delivery ids."""
    ids: list[str] = []
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO alarm_rules (rule_id, name, metric, op, threshold, clear_threshold, severity, channels)"
            " VALUES ('ispu-high', 'ISPU above 100', 'ispu', '>', 100, 100, 'warning', %s) ON CONFLICT DO NOTHING",
            (channel_ids,),
        )
        specs = [sensors.air(f"aq-{uuid.uuid4().hex[:10]}", city, "Menteng") for _ in range(count)]
        keys = sensors.register(conn, specs)
        for number, spec in enumerate(specs):
            row = conn.execute(
                "INSERT INTO alarms (rule_id, sensor_key, city, district, severity, state, raised_at, value,"
                " last_value) VALUES ('ispu-high', %s, %s, 'Menteng', 'warning', 'active', now(), %s, %s)"
                " RETURNING alarm_id",
                (keys[spec.sensor_id], city, 101 + number, 101 + number),
            ).fetchone()
            assert row is not None
            payload = alarm_payload("raised", row[0], spec.sensor_id, city, 101 + number)
            for channel_id in channel_ids:
                delivery = conn.execute(
                    "INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload, created_at)"
                    " VALUES (%s, %s, 'raised', %s, now() - %s * interval '1 s') RETURNING delivery_id",
                    (channel_id, row[0], Jsonb(payload), created_ago_s),
                ).fetchone()
                assert delivery is not None
                ids.append(str(delivery[0]))
        conn.execute(f"NOTIFY {CHANNEL_DELIVERIES}")
        conn.commit()
    return ids


def deliveries(url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The outbox rows of `ids`: delivery_id -> {status, attempts, last_error, ...}."""
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT delivery_id::text, status, attempts, last_error, claimed_by FROM notification_deliveries"
            " WHERE delivery_id = ANY(%s::uuid[])",
            (ids,),
        )
        return {row["delivery_id"]: row for row in cur.fetchall()}


def wait_for_delivery(
    url: str, delivery_id: str, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
) -> dict[str, Any]:
    """Poll the outbox row of `delivery_id` until `condition(row)` holds; the row (AssertionError after
    `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = deliveries(url, [delivery_id])[delivery_id]
        if condition(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} did not get there within {timeout_s:.0f} s: {row}")
        time.sleep(0.2)


def wait_until_settled(url: str, ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Poll the outbox until no delivery of `ids` is pending; the rows (AssertionError after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = deliveries(url, ids)
        if len(rows) == len(ids) and all(r["status"] != "pending" for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            pending = [r for r in rows.values() if r["status"] == "pending"]
            raise AssertionError(f"{len(pending)} deliveries still pending after {timeout_s:.0f} s: {pending[:3]}")
        time.sleep(0.2)
