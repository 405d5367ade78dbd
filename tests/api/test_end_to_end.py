"""The API over data that went through the real path: MQTT (Mosquitto) -> ingester -> PostgreSQL -> processor.

Sensors are registered through the API itself; readings are published as devices publish them; values read back
through the API are compared with what was published, computed here independently.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ingest import Ingester, IngestSettings
from livinglab.embedded import MosquittoBroker
from livinglab.precision import round_field
from processing import Processor, ProcessorSettings
from tests.support.api import Keys, api_client, make_keys, walk
from tests.support.ingest import publish_all
from tests.support.roles import running, scalar, wait_until

pytestmark = pytest.mark.integration

NO2_UG_PER_PPB = 46.0055 / 24.45
AIR = {"sensor_id": "aq-e2e", "city": "semarang", "district": "Candisari", "kind": "air", "lat": -7.0, "lon": 110.4}
TRAFFIC = {
    "sensor_id": "tc-e2e",
    "city": "semarang",
    "district": "Tembalang",
    "kind": "traffic",
    "lat": -7.05,
    "lon": 110.44,
    "interval_s": 60,
    "road_type": "4/2-T",
    "lanes": 2,
    "road_function": "arteri_sekunder",
    "city_population": 1_700_000,
}


@pytest.fixture(scope="module")
def platform(api_database_url: str, mqtt_broker: MosquittoBroker) -> Iterator[tuple[TestClient, Keys, dict[str, Any]]]:
    """Ingester and processor running, sensors registered through the API, and a few minutes of readings in."""
    prefix = f"t{time.monotonic_ns() % 10**12}/livinglab/v1"
    env: dict[str, Any] = {"database_url": api_database_url, "mqtt_url": mqtt_broker.url, "topic_prefix": prefix}
    keys = make_keys(api_database_url)
    ingester = Ingester(IngestSettings(**env, client_id=f"ingest-{prefix[:13]}", batch_interval_ms=50))
    processor = Processor(ProcessorSettings(**env, poll_interval_s=0.3))
    with api_client(api_database_url, mqtt_url=mqtt_broker.url) as client, running(ingester, processor):
        assert ingester.wait_connected()
        for spec in (AIR, TRAFFIC):
            assert client.post("/v1/sensors", json=spec, headers=keys.header("write")).status_code == 201
        now = time.time()
        minute = int(now // 60 * 60) - 4 * 60
        rng = np.random.default_rng(7)
        pm25 = {minute + 60 * m + 15 * k: round(float(rng.uniform(5, 80)), 2) for m in range(4) for k in range(4)}
        no2_ppb = {minute + 60 * m: round(float(rng.uniform(5, 40)), 1) for m in range(4)}
        pack: list[dict[str, Any]] = [{"bn": "urn:dev:livinglab:aq-e2e:", "bt": minute}]
        pack += [{"n": "pm25", "u": "ug/m3", "v": v, "t": t - minute} for t, v in pm25.items()]
        pack += [{"n": "no2", "u": "ppb", "v": v, "t": t - minute} for t, v in no2_ppb.items()]
        counts = {minute + 60 * m: {"sm": 20 + m, "kr": 10 + m, "kb": m} for m in range(4)}
        traffic = [{"ts": datetime.fromtimestamp(t, UTC).isoformat(), **c, "speed": 35.5} for t, c in counts.items()]
        bad = b'{"ts": "2026-11-28T10:00:00+07:00", "pm25": NaN}'
        unknown = json.dumps([{"ts": int(now) - 30, "pm25": 12.0}]).encode()
        air_payload = json.dumps(pack).encode()
        publish_all(
            mqtt_broker.port,
            [
                (f"{prefix}/semarang/air/aq-e2e", air_payload),
                (f"{prefix}/semarang/traffic/tc-e2e", json.dumps(traffic).encode()),
                (f"{prefix}/semarang/air/aq-e2e", bad),
                (f"{prefix}/semarang/air/aq-new", unknown),
                (f"{prefix}/semarang/air/aq-e2e", air_payload),  # sent again: duplicates
            ],
        )
        expected_windows = 4 * 2 + 4 * 4  # air: pm25 and no2 per minute; traffic: sm, kr, kb, speed per minute
        wait_until(lambda: scalar(api_database_url, "SELECT count(*) FROM agg_1m") >= expected_windows)
        wait_until(lambda: scalar(api_database_url, "SELECT count(*) FROM rejected") >= 2)
        wait_until(lambda: scalar(api_database_url, "SELECT coalesce(sum(duplicates), 0) FROM ingest_counters") > 0)
        wait_until(lambda: scalar(api_database_url, "SELECT count(*) FROM dirty_windows") == 0)
        sent = {"pm25": pm25, "no2_ppb": no2_ppb, "counts": counts, "bad": bad, "unknown": unknown, "now": now}
        yield client, keys, sent


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_readings_are_what_was_published(platform) -> None:
    client, keys, sent = platform
    items = walk(client, "/v1/sensors/aq-e2e/readings", {"limit": 5}, keys.header())
    got = {(i["quantity"], i["ts"]): i["value"] for i in items}
    expected = {("pm25", _iso(t)): v for t, v in sent["pm25"].items()}
    expected |= {("no2", _iso(t)): v * NO2_UG_PER_PPB for t, v in sent["no2_ppb"].items()}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12)
    only = walk(client, "/v1/sensors/aq-e2e/readings", {"quantity": "no2"}, keys.header())
    assert len(only) == 4


def test_minute_aggregates_match_the_readings(platform) -> None:
    client, keys, sent = platform
    items = walk(client, "/v1/sensors/aq-e2e/aggregates", {"window": "1m", "quantity": "pm25"}, keys.header())
    by_minute: dict[int, list[float]] = {}
    for t, v in sent["pm25"].items():
        by_minute.setdefault(t // 60 * 60, []).append(v)
    assert [i["window_start"] for i in items] == [_iso(m) for m in sorted(by_minute)]
    for item in items:
        values = np.array(by_minute[int(datetime.fromisoformat(item["window_start"]).timestamp())])
        assert item["count"] == 4
        # Statistics at their precision (livinglab.precision), within half a unit of the last place (0.01 ug/m3)
        # of the unrounded computation; min and max are readings, as sent.
        for stat, exact in (("mean", values.mean()), ("p50", np.median(values)), ("p95", np.percentile(values, 95))):
            assert item[stat] == round_field(stat, float(exact), quantity="pm25")
            assert item[stat] == pytest.approx(exact, abs=0.005 + 1e-9)
        assert item["min"] == values.min()
        assert item["max"] == values.max()
        assert item["completeness"] == 1.0  # 4 readings where a 60 s interval implies 1: capped at 1
        assert item["final"] is False
    counts = walk(client, "/v1/sensors/tc-e2e/aggregates", {"window": "1m", "quantity": "kr"}, keys.header())
    assert [i["mean"] for i in counts] == [float(c["kr"]) for _, c in sorted(sent["counts"].items())]


def test_quality_counts_what_the_ingester_saw(platform) -> None:
    client, keys, sent = platform
    items = {i["sensor_id"]: i for i in walk(client, "/v1/quality/sensors", {"city": "semarang"}, keys.header())}
    assert set(items) == {"aq-e2e", "tc-e2e"}
    air = items["aq-e2e"]
    assert air["accepted_24h"] == len(sent["pm25"]) + len(sent["no2_ppb"])
    assert air["duplicates_24h"] == len(sent["pm25"]) + len(sent["no2_ppb"])
    assert air["rejected_24h"] == 1
    assert items["tc-e2e"]["accepted_24h"] == 4 * 4
    assert items["tc-e2e"]["rejected_24h"] == 0
    last_seen = datetime.fromisoformat(air["last_seen"]).timestamp()
    assert sent["now"] - 5 < last_seen < time.time() + 1
    # Readings were published 0-4 minutes after their timestamps: the merged histogram says so.
    assert 0 < air["latency_p50_s"] <= air["latency_p95_s"] < 6 * 60
    # Completeness counts completed hours only. Readings all in the current hour: nothing was expected so far. A run
    # in the first minutes of an hour puts some of them in the hour before, which is complete and counted.
    if {t // 3600 for t in sent["pm25"]} == {int(sent["now"]) // 3600}:
        assert air["completeness_24h"] is None
    else:
        assert air["completeness_24h"] is not None
        assert 0 < air["completeness_24h"] <= 1


def test_rejected_messages_are_listed_and_replayed_by_the_ingester(platform, api_database_url: str) -> None:
    client, keys, sent = platform
    r = keys.header()
    unknown = walk(client, "/v1/rejected", {"reason": "unknown_sensor"}, r)
    assert [i["sensor_id"] for i in unknown] == ["aq-new"]
    assert base64.b64decode(unknown[0]["payload_base64"]) == sent["unknown"]
    assert unknown[0]["payload_truncated"] is False
    assert unknown[0]["replay_status"] == "none"
    nan = walk(client, "/v1/rejected", {"sensor_id": "aq-e2e"}, r)
    assert [i["reason"] for i in nan] == ["non_finite_value"]
    assert walk(client, "/v1/rejected", {"city": "semarang", "kind": "traffic"}, r) == []

    # The sensor is registered afterwards; the replay goes through the database to the running ingester.
    spec = {**AIR, "sensor_id": "aq-new"}
    assert client.post("/v1/sensors", json=spec, headers=keys.header("write")).status_code == 201
    rejected_id = unknown[0]["id"]
    assert client.post(f"/v1/rejected/{rejected_id}/replay", headers=r).status_code == 403
    replay = client.post(f"/v1/rejected/{rejected_id}/replay", headers=keys.header("write"))
    assert replay.status_code == 202
    assert replay.json()["replay_status"] == "pending"
    requested = scalar(api_database_url, "SELECT replay_requested_at FROM rejected WHERE id = %s", (rejected_id,))
    assert requested is not None

    done = wait_until(
        lambda: (i := client.get(f"/v1/rejected/{rejected_id}", headers=r).json())["replay_status"] != "pending" and i,
        timeout_s=30,
    )
    assert (done["replay_status"], done["replay_outcome"]) == ("accepted", "accepted")
    assert datetime.fromisoformat(done["replayed_at"]) >= datetime.fromisoformat(done["replay_requested_at"])
    readings = client.get("/v1/sensors/aq-new/readings", headers=r).json()["items"]
    assert [(i["quantity"], i["value"]) for i in readings] == [("pm25", 12.0)]
    assert [i["id"] for i in walk(client, "/v1/rejected", {"replay": "accepted"}, r)] == [rejected_id]
    # Accepted once: never again.
    assert client.post(f"/v1/rejected/{rejected_id}/replay", headers=keys.header("write")).status_code == 409


def test_a_replay_rejected_again_records_the_reason_and_may_be_requested_again(platform) -> None:
    client, keys, _ = platform
    r, w = keys.header(), keys.header("write")
    nan = walk(client, "/v1/rejected", {"reason": "non_finite_value"}, r)[0]

    def outcome() -> Any:
        item = client.get(f"/v1/rejected/{nan['id']}", headers=r).json()
        return item if item["replay_status"] != "pending" else None

    for _ in range(2):
        assert client.post(f"/v1/rejected/{nan['id']}/replay", headers=w).json()["replay_status"] == "pending"
        again = wait_until(outcome, timeout_s=30)
        assert (again["replay_status"], again["replay_outcome"]) == ("rejected", "non_finite_value")
    assert [i["id"] for i in walk(client, "/v1/rejected", {"replay": "rejected"}, r)] == [nan["id"]]
    # Rejected again is recorded on the message, not stored as another rejection.
    assert len(walk(client, "/v1/rejected", {"reason": "non_finite_value"}, r)) == 1
