"""The quota of rejected payload bytes holds under a storm: a device flooding large invalid payloads through a real
broker into a real ingester fills `rejected` with metadata, not with its payloads, while another device's
rejections keep theirs; the drops are counted per sensor, in the metrics and on the quality page."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from livinglab.embedded import MosquittoBroker
from livinglab.storage.keys import Scope, create_key
from tests.support.api import serving
from tests.support.ingest import ingesting, publish_all
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import register

pytestmark = pytest.mark.integration

CAP = 64 * 1024
QUOTA = 4 * CAP
AIR = "livinglab/v1/jakarta/air"


def test_the_rejected_payload_quota_holds_under_a_storm(own_broker: MosquittoBroker, fresh_database_url: str) -> None:
    url = fresh_database_url
    register(url, "aq-1", "aq-2")
    storm = [(f"{AIR}/aq-1", b"{" + b"x" * (200 * 1024)) for _ in range(100)]  # invalid_json, 200 KiB each
    neighbour = [(f"{AIR}/aq-2", b'{"ts": 1, "pm25": "x"') for _ in range(3)]
    unparsable = [(f"{AIR}/AQ-{i}", b"{" + b"y" * (100 * 1024)) for i in range(20)]  # topic_invalid, city jakarta
    settings = {
        "database_url": url,
        "mqtt_url": own_broker.url,
        "rejected_payload_cap_bytes": CAP,
        "rejected_quota_bytes": QUOTA,
    }
    with ingesting(**settings) as ingester:
        publish_all(own_broker.port, storm[:50] + neighbour + unparsable + storm[50:])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected") == 123, timeout_s=60)
        wait_until(lambda: ingester.metrics.payloads_dropped._value.get() == 96 + 16)
        dropped_bytes = ingester.metrics.payload_bytes_dropped._value.get()

    by_sensor = rows(
        url,
        "SELECT coalesce(sensor_id, '-'), payload_dropped, count(*), sum(octet_length(payload)), min(payload_size)"
        " FROM rejected GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert by_sensor == [
        ("-", False, 4, 4 * CAP, 100 * 1024 + 1),  # the city's quota: what the jakarta gateway could send
        ("-", True, 16, 0, 100 * 1024 + 1),
        ("aq-1", False, 4, QUOTA, 200 * 1024 + 1),
        ("aq-1", True, 96, 0, 200 * 1024 + 1),
        ("aq-2", False, 3, 3 * len(neighbour[0][1]), len(neighbour[0][1])),
    ]
    assert dropped_bytes == (96 + 16) * CAP
    assert rows(url, "SELECT reason, count(*) FROM rejected GROUP BY 1 ORDER BY 1") == [
        ("invalid_json", 103),
        ("topic_invalid", 20),
    ]
    assert scalar(url, "SELECT sum(messages) FROM rejected_drops") == 96
    keys = dict(rows(url, "SELECT sensor_id, sensor_key FROM sensors"))
    assert rows(url, "SELECT quota_key, kept_bytes, dropped_messages FROM rejected_quota ORDER BY 1") == [
        ("city:jakarta", 4 * CAP, 16),
        (f"sensor:{keys['aq-1']}", QUOTA, 96),
        (f"sensor:{keys['aq-2']}", 3 * len(neighbour[0][1]), 0),
    ]
    wait_until(lambda: scalar(url, "SELECT sum(rejected) FROM ingest_counters") == 103)  # every one counted

    with psycopg.connect(url) as conn:
        key = create_key(conn, Scope.SENSORS_WRITE, name="quota")
        conn.commit()
    with serving(url) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
        quality = {q["sensor_id"]: q for q in api.get("/v1/quality/sensors").json()["items"]}
        rejected = api.get("/v1/rejected", params={"sensor_id": "aq-1", "limit": 1000}).json()["items"]
        replay = api.post(f"/v1/rejected/{next(r['id'] for r in rejected if r['payload_dropped'])}/replay")
    assert (quality["aq-1"]["payloads_dropped_24h"], quality["aq-1"]["rejected_24h"]) == (96, 100)
    assert (quality["aq-2"]["payloads_dropped_24h"], quality["aq-2"]["rejected_24h"]) == (0, 3)
    assert sum(r["payload_dropped"] for r in rejected) == 96
    assert all(r["payload_base64"] == "" for r in rejected if r["payload_dropped"])
    assert replay.status_code == 409  # a dropped payload cannot be replayed
