"""The SSE stream: events as the processor stores them, heartbeats, type filters and Last-Event-ID resume."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from livinglab.events import EventType, items_payload, latest_event_id, publish_event
from tests.support.api import Keys, SseReader, serving

pytestmark = pytest.mark.integration


def _publish(url: str, type_: EventType, n: int) -> int:
    """Publish one event; returns the id it got at commit."""
    with psycopg.connect(url) as conn:
        publish_event(conn, type_, items_payload([{"sensor_id": f"s{n}", "n": n}]), city="jakarta")
        conn.commit()
        return latest_event_id(conn)


def test_stream_live_heartbeat_filter_and_resume(api_database_url: str, keys: Keys) -> None:
    url = api_database_url
    with serving(url, sse_heartbeat_s=0.3) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("GET", "/v1/stream", headers=keys.header()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(response)
            assert reader.next_comment().startswith("connected")
            assert reader.next_comment() == "heartbeat"
            first = _publish(url, EventType.ISPU, 1)
            message = reader.next_message()
            assert message["id"] == str(first)
            assert message["event"] == "ispu"
            assert json.loads(message["data"]) == {"items": [{"sensor_id": "s1", "n": 1}], "truncated": False}

        # Missed while disconnected: resumed from the events table.
        second = _publish(url, EventType.TRAFFIC, 2)
        third = _publish(url, EventType.AQI, 3)
        resume = {**keys.header(), "Last-Event-ID": str(first)}
        with http.stream("GET", "/v1/stream", headers=resume) as response:
            reader = SseReader(response)
            assert [reader.next_message()["id"] for _ in range(2)] == [str(second), str(third)]
            fourth = _publish(url, EventType.AGGREGATES, 4)
            assert reader.next_message()["id"] == str(fourth)

        with http.stream("GET", "/v1/stream", params={"types": "aqi"}, headers=resume) as response:
            reader = SseReader(response)
            assert reader.next_message()["id"] == str(third)
            _publish(url, EventType.ISPU, 5)
            sixth = _publish(url, EventType.AQI, 6)
            assert reader.next_message()["id"] == str(sixth)


def test_stream_far_behind_gets_a_resync(api_database_url: str, keys: Keys) -> None:
    url = api_database_url
    first = _publish(url, EventType.ISPU, 10)
    for n in range(5):
        _publish(url, EventType.ISPU, 11 + n)
    with serving(url, sse_max_backlog=3) as base, httpx.Client(base_url=base, timeout=10) as http:
        resume = {**keys.header(), "Last-Event-ID": str(first)}
        with http.stream("GET", "/v1/stream", headers=resume) as response:
            message = SseReader(response).next_message()
            assert message["event"] == "resync"
        bad = http.get("/v1/stream", headers={**keys.header(), "Last-Event-ID": "abc"})
        assert bad.status_code == 400
        assert http.get("/v1/stream").status_code == 401
