"""End to end through every role: SenML over MQTT -> readings -> 1-minute aggregates -> HTTP API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from ingest import Ingester, IngestSettings
from livinglab.embedded import MosquittoBroker
from livinglab.storage.keys import Scope, create_key
from processing import Processor, ProcessorSettings
from tests.support.ingest import publish_all
from tests.support.roles import running, scalar, wait_until
from tests.support.sensors import register

pytestmark = pytest.mark.integration


def test_senml_to_aggregates_api(fresh_database_url: str, mqtt_broker: MosquittoBroker, topic_prefix: str) -> None:
    env: dict[str, Any] = {
        "database_url": fresh_database_url,
        "mqtt_url": mqtt_broker.url,
        "topic_prefix": topic_prefix,
    }
    with psycopg.connect(fresh_database_url) as conn:
        register(conn, "aq-07")
        key = create_key(conn, Scope.READ)
        conn.commit()

    minute = int(time.time() // 60 * 60) - 120
    pack = [{"bn": "urn:dev:livinglab:aq-07:", "bt": minute}]
    pack += [{"n": "pm25", "u": "ug/m3", "v": v, "t": t} for t, v in [(0, 40.0), (20, 42.0), (40, 47.0)]]
    pack += [{"n": "pm25", "t": 60, "v": 30.0}]

    ingester = Ingester(IngestSettings(**env, client_id=f"ingest-{topic_prefix[:13]}", batch_interval_ms=50))
    processor = Processor(ProcessorSettings(**env, poll_interval_s=0.5))
    with running(ingester, processor):
        assert ingester.wait_connected()
        publish_all(mqtt_broker.port, [(f"{topic_prefix}/jakarta/air/aq-07", json.dumps(pack).encode())])
        # Generous: the first processor in a fresh checkout compiles its kernels, on a machine that may be busy.
        wait_until(lambda: scalar(fresh_database_url, "SELECT count(*) FROM agg_1m") == 2, timeout_s=120)

    app = create_app(ApiSettings(**env))
    with TestClient(app) as client:
        response = client.get(
            "/v1/sensors/aq-07/aggregates",
            params={"window": "1m", "quantity": "pm25"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == httpx.codes.OK
        items = response.json()["items"]
        assert [(i["count"], i["mean"], i["min"], i["max"]) for i in items] == [
            (3, 43.0, 40.0, 47.0),
            (1, 30.0, 30.0, 30.0),
        ]
        assert items[0]["p50"] == 42.0
        assert items[0]["p95"] == pytest.approx(42.0 + 0.9 * 5.0)  # h = 2 * 0.95 = 1.9 -> x1 + 0.9 (x2 - x1)
        assert items[0]["completeness"] == 1.0
        assert items[0]["final"] is False
        assert items[0]["window_start"].endswith("Z")

        health = client.get("/v1/health").json()
        assert health == {
            "status": "ok",
            "checks": {
                "database": {"status": "ok", "detail": None},
                "broker": {"status": "ok", "detail": None},
                "events": {"status": "ok", "detail": None},
            },
        }
