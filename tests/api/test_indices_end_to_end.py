"""Indices, traffic, service levels and the live stream over data that went through MQTT, the ingester and the
processor. Expected values are worked out here from the regulation tables (CONTRACT.md section 4)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ingest import Ingester, IngestSettings
from livinglab.embedded import MosquittoBroker
from processing import Processor, ProcessorSettings
from tests.support.api import SseReader, make_keys, serving
from tests.support.clock import clear_of_hour_end
from tests.support.ingest import publish_all
from tests.support.roles import running, scalar, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIR = {
    "sensor_id": "aq-idx", "city": "solo", "district": "Laweyan", "kind": "air", "lat": -7.57, "lon": 110.8,
    "interval_s": 3600,
}  # fmt: skip
TRAFFIC = {
    "sensor_id": "tc-idx", "city": "solo", "district": "Jebres", "kind": "traffic", "lat": -7.56, "lon": 110.85,
    "interval_s": 300, "road_type": "4/2-T", "lanes": 2, "road_function": "arteri_sekunder",
    "city_population": 600_000,
}  # fmt: skip
# ISPU bands of PM2.5 (reference/ispu_2020.csv): (ISPU at the top, 24-hour mean at the top).
ISPU_PM25 = [(50, 15.5), (100, 55.4), (200, 150.4), (300, 250.4), (500, 500.0)]
# US AQI PM2.5 bands, 2024 (reference/aqi_epa_2024.csv).
AQI_PM25 = [(0, 50, 0.0, 9.0), (51, 100, 9.1, 35.4), (101, 150, 35.5, 55.4), (151, 200, 55.5, 125.4)]


def ispu_pm25(mean: float) -> int:
    low_i, low_x = 0, 0.0
    for top_i, top_x in ISPU_PM25:
        if mean <= top_x:
            return math.floor((top_i - low_i) / (top_x - low_x) * (mean - low_x) + low_i + 0.5)
        low_i, low_x = top_i, top_x
    return 500


def nowcast(hours_newest_first: list[float]) -> float:
    w = max(0.5, min(hours_newest_first) / max(hours_newest_first))
    value = sum(c * w**i for i, c in enumerate(hours_newest_first)) / sum(w**i for i in range(len(hours_newest_first)))
    return math.floor(value * 10 + 1e-9) / 10


def aqi_pm25(concentration: float) -> int:
    for i_lo, i_hi, c_lo, c_hi in AQI_PM25:
        if concentration <= c_hi:
            return math.floor((i_hi - i_lo) / (c_hi - c_lo) * (concentration - c_lo) + i_lo + 0.5)
    raise AssertionError("out of the bands used here")


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def city(api_database_url: str, mqtt_broker: MosquittoBroker) -> Iterator[dict[str, Any]]:
    prefix = f"t{time.monotonic_ns() % 10**12}/livinglab/v1"
    env: dict[str, Any] = {"database_url": api_database_url, "mqtt_url": mqtt_broker.url, "topic_prefix": prefix}
    keys = make_keys(api_database_url)
    clear_of_hour_end(120)  # keep the whole run inside one hour
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # PM2.5 at half past each of the 24 hours before `hour`: 40 ug/m3, and 100 in the last one.
    pm25 = {hour - timedelta(hours=h) + timedelta(minutes=30): (100.0 if h == 1 else 40.0) for h in range(1, 25)}
    counts = [{"sm": 100, "kr": 50, "kb": 5} for _ in range(12)]  # 5-minute intervals of the last full hour
    ingester = Ingester(IngestSettings(**env, client_id=f"ingest-{prefix[:13]}", batch_interval_ms=50))
    processor = Processor(ProcessorSettings(**env, poll_interval_s=0.3, hour_rollup_delay_s=0, day_rollup_delay_s=0))
    with serving(api_database_url, mqtt_url=mqtt_broker.url) as base, running(ingester, processor):
        http = httpx.Client(base_url=base, timeout=20)
        assert ingester.wait_connected()
        for spec in (AIR, TRAFFIC):
            assert http.post("/v1/sensors", json=spec, headers=keys.header("write")).status_code == 201
        air = [{"ts": t.isoformat(), "pm25": v} for t, v in pm25.items()]
        start = hour - timedelta(hours=1)
        traffic = [{"ts": (start + timedelta(minutes=5 * i)).isoformat(), **c} for i, c in enumerate(counts)]
        publish_all(
            mqtt_broker.port,
            [(f"{prefix}/solo/air/aq-idx", json.dumps(air).encode()),
             (f"{prefix}/solo/traffic/tc-idx", json.dumps(traffic).encode())],
        )  # fmt: skip
        wait_until(lambda: scalar(api_database_url, "SELECT count(*) FROM readings") == 24 + 36, timeout_s=60)
        wait_until(
            lambda: scalar(api_database_url, "SELECT count(*) FROM ispu_hourly WHERE window_end = %s", (hour,)),
            timeout_s=120,
        )
        wait_until(
            lambda: scalar(api_database_url, "SELECT count(*) FROM traffic_hourly WHERE hour = %s", (start,)),
            timeout_s=120,
        )
        for queue in ("dirty_windows", "dirty_rollups"):
            wait_until(lambda q=queue: scalar(api_database_url, f"SELECT count(*) FROM {q}") == 0, timeout_s=120)
        yield {"http": http, "keys": keys, "hour": hour, "pm25": pm25, "prefix": prefix, "broker": mqtt_broker}
        http.close()


def test_ispu_at_now_and_an_hour_earlier(city) -> None:
    http, keys, hour = city["http"], city["keys"], city["hour"]
    now = http.get("/v1/air/ispu", params={"city": "solo"}, headers=keys.header()).json()["items"]
    assert len(now) == 1
    item = now[0]
    assert item["sensor_id"] == "aq-idx"
    assert item["district"] == "Laweyan"
    assert item["window_end"] == iso(hour)
    assert item["hours_valid"] == 24
    assert item["ispu"] == ispu_pm25((23 * 40.0 + 100.0) / 24) == 84
    assert item["category"] == "Sedang"
    assert item["colour_hex"].lower() == "#0000cc"
    assert item["critical_parameter"] == "pm25"
    assert item["sub_indices"]["pm25"] == 84
    # As of just before `hour`, the latest label is an hour earlier: 23 valid hours, all at 40.
    earlier = http.get(
        "/v1/air/ispu", params={"city": "solo", "at": iso(hour - timedelta(seconds=1))}, headers=keys.header()
    ).json()["items"][0]
    assert earlier["window_end"] == iso(hour - timedelta(hours=1))
    assert earlier["hours_valid"] == 23
    assert earlier["ispu"] == ispu_pm25(40.0) == 81


def test_aqi_nowcast(city) -> None:
    http, keys, hour = city["http"], city["keys"], city["hour"]
    item = http.get("/v1/air/aqi", params={"city": "solo"}, headers=keys.header()).json()["items"][0]
    assert item["hour"] == iso(hour)
    expected_nowcast = nowcast([100.0] + [40.0] * 11)
    assert item["nowcast"]["pm25"] == pytest.approx(expected_nowcast)
    assert item["aqi"] == aqi_pm25(expected_nowcast) == 161
    assert item["dominant_pollutant"] == "pm25"
    assert item["category"] == "Unhealthy"
    earlier = http.get(
        "/v1/air/aqi", params={"city": "solo", "at": iso(hour - timedelta(minutes=1))}, headers=keys.header()
    ).json()["items"][0]
    assert earlier["aqi"] == aqi_pm25(40.0) == 112


def test_traffic_segment_of_the_last_hour(city) -> None:
    http, keys, hour = city["http"], city["keys"], city["hour"]
    items = http.get("/v1/traffic/segments", params={"city": "solo"}, headers=keys.header()).json()["items"]
    assert [i["sensor_id"] for i in items] == ["tc-idx"]
    segment = items[0]
    assert segment["hour"] == iso(hour - timedelta(hours=1))  # labelled by the hour's start
    assert segment["flow_veh_h"] == 12 * 155
    assert segment["flow_pcu_h"] > 0
    # DJ is served to 2 decimals, flow and capacity at theirs (livinglab.precision): half a unit of DJ's last place,
    # plus what rounding the capacity to whole pcu/h moves the quotient.
    assert segment["degree_of_saturation"] == pytest.approx(
        segment["flow_pcu_h"] / segment["capacity_pcu_h"], abs=0.006
    )
    assert segment["los"] in "ABCDEF"
    assert segment["los_target"] in "ABCDEF"
    before = iso(hour - timedelta(hours=1, seconds=1))
    assert http.get("/v1/traffic/segments", params={"at": before}, headers=keys.header()).json()["items"] == []


def test_service_levels_over_the_last_hours(city) -> None:
    http, keys, hour = city["http"], city["keys"], city["hour"]
    params = {"city": "solo", "start": iso(hour - timedelta(hours=3)), "end": iso(hour)}

    def levels() -> dict[tuple[str, str], dict[str, Any]]:
        items = http.get("/v1/service-levels", params=params, headers=keys.header()).json()["items"]
        return {(i["district"], i["service"]): i for i in items}

    # The processor tallies an hour once it is over; the last one is being tallied around now.
    found = wait_until(lambda: (lv := levels()).get(("Laweyan", "air"), {}).get("denominator") == 3 and lv)
    air = found[("Laweyan", "air")]
    # Station-hours labelled by the hour's end: ISPU 81, 81, 84, all at most 100.
    assert (air["numerator"], air["achieved"], air["target"], air["compliant"]) == (3, 1.0, 0.90, True)
    assert air["indicator"] == "ispu_at_most_100_share"
    traffic = wait_until(lambda: levels().get(("Jebres", "traffic")))
    segment = http.get("/v1/traffic/segments", params={"city": "solo"}, headers=keys.header()).json()["items"][0]
    assert traffic["denominator"] == 1
    assert traffic["numerator"] == (1 if segment["los_met"] else 0)
    assert traffic["indicator"] == "los_target_met_share"


def test_quality_completeness_of_the_last_day(city) -> None:
    http, keys = city["http"], city["keys"]
    items = http.get("/v1/quality/sensors", params={"city": "solo"}, headers=keys.header()).json()["items"]
    by_id = {i["sensor_id"]: i for i in items}
    # One PM2.5 reading in each of the 24 completed hours, one expected per hour (interval 3600 s).
    assert by_id["aq-idx"]["completeness_24h"] == 1.0
    assert by_id["aq-idx"]["accepted_24h"] >= 23  # the oldest hour may fall outside the 24 hourly buckets
    # 12 five-minute counts of 3 classes in the last hour; nothing expected before its first report.
    assert by_id["tc-idx"]["completeness_24h"] == 1.0
    assert by_id["tc-idx"]["accepted_24h"] == 36


def test_stream_carries_the_update_of_a_new_reading(city) -> None:
    http, keys = city["http"], city["keys"]
    with http.stream("GET", "/v1/stream", params={"types": "aggregates"}, headers=keys.header()) as response:
        reader = SseReader(response)
        assert reader.next_comment().startswith("connected")
        ts = datetime.now(UTC).replace(second=5, microsecond=0)
        publish_all(
            city["broker"].port,
            [(f"{city['prefix']}/solo/air/aq-idx", json.dumps({"ts": ts.isoformat(), "pm25": 33.3}).encode())],
        )
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "no live update for the new reading"
            message = reader.next_message()
            items = json.loads(message["data"])["items"]
            mine = [i for i in items if i["sensor_id"] == "aq-idx" and i["window_start"] == iso(ts.replace(second=0))]
            if mine:
                break
        assert message["event"] == "aggregates"
        assert int(message["id"]) > 0
        assert mine[0]["mean"] == 33.3
