"""The response cache of the JSON lists: reused within its time to live, dropped as soon as results change."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest

from livinglab.events import EventType, items_payload, publish_event
from tests.api import seed
from tests.support.api import Keys, api_client
from tests.support.sensors import air, register

pytestmark = pytest.mark.integration

H = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _ispu(client, keys: Keys) -> list[int]:
    response = client.get("/v1/air/ispu", params={"city": "cachecity", "at": H.isoformat()}, headers=keys.header())
    assert response.status_code == 200
    return [i["ispu"] for i in response.json()["items"]]


def test_cache_serves_again_until_an_event_or_its_ttl(api_database_url: str, keys: Keys) -> None:
    with psycopg.connect(api_database_url) as conn:
        ids = register(conn, [air("cache-1", "cachecity", "C")])
        seed.ispu_rows(conn, ids["cache-1"], [H], 40)
        conn.commit()

    def change(value: int, *, announce: bool) -> None:
        with psycopg.connect(api_database_url) as conn:
            conn.execute("UPDATE ispu_hourly SET ispu = %s WHERE sensor_key = %s", (value, ids["cache-1"]))
            if announce:  # as a processor does in the transaction that stores results
                publish_event(conn, EventType.ISPU, items_payload([{"sensor_id": "cache-1"}]), city="cachecity")
            conn.commit()

    with api_client(api_database_url, response_cache_s=60) as client:
        assert _ispu(client, keys) == [40]
        change(41, announce=False)
        assert _ispu(client, keys) == [40]  # unannounced change: the cached answer stands
        change(42, announce=True)
        deadline = time.monotonic() + 10
        while _ispu(client, keys) != [42]:
            assert time.monotonic() < deadline, "the event did not drop the cached answer"
            time.sleep(0.05)
        # Another key, same URL: still authenticated first.
        assert client.get("/v1/air/ispu", params={"city": "cachecity"}).status_code == 401

    with api_client(api_database_url, response_cache_s=0.2) as client:
        assert _ispu(client, keys) == [42]
        change(43, announce=False)
        time.sleep(0.3)
        assert _ispu(client, keys) == [43]

    with api_client(api_database_url, response_cache_s=0) as client:
        assert _ispu(client, keys) == [43]
        change(44, announce=False)
        assert _ispu(client, keys) == [44]
