"""The alarm routes: rules validated on write, alarms listed newest first and acknowledged once, with events and
queued notifications in the transaction of the change."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from livinglab.alarms.episodes import RaiseRequest, raise_alarm
from tests.support.api import Keys
from tests.support.roles import rows
from tests.support.sensors import air, register, traffic

pytestmark = pytest.mark.integration

RULE: dict[str, Any] = {
    "name": "PM2.5 high",
    "metric": "mean_1m:pm25",
    "op": ">",
    "threshold": 55,
    "severity": "warning",
}


@pytest.fixture(scope="module")
def sensors(api_database_url: str) -> dict[str, int]:
    return register(api_database_url, [air("al-aq-1"), air("al-aq-2", "bandung", "Coblong"), traffic("al-tc-1")])


def _post(client: TestClient, keys: Keys, body: dict[str, Any], scope: str = "write") -> Any:
    return client.post("/v1/alarm-rules", json=body, headers=keys.header(scope))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULE, "metric": "pm25"}, "metric"),
        ({**RULE, "metric": "mean_1m:pm99"}, "metric"),
        ({**RULE, "metric": "mean_1m"}, "metric"),
        ({**RULE, "metric": "ispu", "sensor_id": "al-tc-1"}, "metric"),
        ({**RULE, "metric": "degree_of_saturation", "sensor_id": "al-aq-1"}, "metric"),
        ({**RULE, "metric": "mean_1m:sm", "sensor_id": "al-aq-1"}, "metric"),
        ({**RULE, "sensor_id": "no-such-sensor"}, "sensor_id"),
        ({**RULE, "sensor_id": "al-aq-1", "city": "bandung"}, "city"),
        ({**RULE, "op": "=="}, "op"),
        ({**RULE, "severity": "fatal"}, "severity"),
        ({**RULE, "clear_threshold": 60}, None),
        ({**RULE, "for_s": -1}, "for_s"),
        ({**RULE, "district": "Menteng"}, None),
        ({**RULE, "extra": 1}, "extra"),
    ],
)
def test_an_invalid_rule_is_a_422_naming_the_field(
    client: TestClient, keys: Keys, sensors: dict[str, int], body: dict[str, Any], field: str | None
) -> None:
    response = _post(client, keys, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in str(response.json()), response.text


def test_rules_round_trip(client: TestClient, keys: Keys, sensors: dict[str, int]) -> None:
    assert _post(client, keys, RULE, scope="read").status_code == 403
    created = _post(client, keys, {**RULE, "sensor_id": "al-aq-1"})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["rule_id"].startswith("rule-")
    # Defaults, and the sensor's city taken as the rule's.
    assert (rule["clear_threshold"], rule["for_s"], rule["enabled"], rule["channels"], rule["city"]) == (
        55.0, 0, True, [], "jakarta",
    )  # fmt: skip
    assert created.headers["location"] == f"/v1/alarm-rules/{rule['rule_id']}"
    path = f"/v1/alarm-rules/{rule['rule_id']}"
    assert client.get(path, headers=keys.header()).json() == rule
    assert _post(client, keys, {**RULE, "rule_id": rule["rule_id"]}).status_code == 409

    changed = client.put(path, json={**rule, "threshold": 80, "clear_threshold": 70}, headers=keys.header("write"))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["threshold"], changed.json()["clear_threshold"]) == (80.0, 70.0)
    mismatch = client.put(path, json={**RULE, "rule_id": "other"}, headers=keys.header("write"))
    assert mismatch.status_code == 422
    # A rule id in a path follows the pattern a rule is created with: one no rule can have is refused as such.
    for other in ("Rule-A", "rule.a"):
        refused = client.get(f"/v1/alarm-rules/{other}", headers=keys.header())
        assert refused.status_code == 422, refused.text
        assert "rule_id" in refused.text
    listed = client.get("/v1/alarm-rules", headers=keys.header()).json()["items"]
    assert rule["rule_id"] in [r["rule_id"] for r in listed]

    assert client.delete(path, headers=keys.header("write")).status_code == 204
    assert client.get(path, headers=keys.header()).status_code == 404
    assert client.delete(path, headers=keys.header("write")).status_code == 404


def _raise(url: str, rule_id: str, key: int, value: float, channels: tuple[str, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        alarm = raise_alarm(conn, RaiseRequest(rule_id, "critical", channels, key, value))
        conn.commit()
    assert alarm is not None
    return int(alarm["alarm_id"])


def test_alarms_listed_newest_first_filtered_and_paged(
    client: TestClient, keys: Keys, sensors: dict[str, int], api_database_url: str
) -> None:
    rule_id = _post(client, keys, {**RULE, "rule_id": "list-rule", "severity": "critical"}).json()["rule_id"]
    ids = [_raise(api_database_url, rule_id, sensors[s], 60.0 + n) for n, s in enumerate(("al-aq-1", "al-aq-2"))]
    body = client.get("/v1/alarms", params={"rule_id": rule_id}, headers=keys.header()).json()
    assert [a["alarm_id"] for a in body["items"]] == ids[::-1]
    first = body["items"][1]
    assert (first["state"], first["value"], first["sensor_id"], first["cleared_at"]) == (
        "active",
        60.0,
        "al-aq-1",
        None,
    )
    assert first["raised_at"].endswith("Z")

    page = client.get("/v1/alarms", params={"rule_id": rule_id, "limit": 1}, headers=keys.header()).json()
    assert [a["alarm_id"] for a in page["items"]] == [ids[1]]
    rest = client.get(
        "/v1/alarms", params={"rule_id": rule_id, "limit": 1, "cursor": page["next_cursor"]}, headers=keys.header()
    ).json()
    assert ([a["alarm_id"] for a in rest["items"]], rest["next_cursor"]) == ([ids[0]], None)

    def listed(**params: Any) -> list[int]:
        response = client.get("/v1/alarms", params={"rule_id": rule_id, **params}, headers=keys.header())
        assert response.status_code == 200, response.text
        return [a["alarm_id"] for a in response.json()["items"]]

    assert listed(city="bandung") == [ids[1]]
    assert listed(sensor_id="al-aq-1") == [ids[0]]
    assert listed(severity="warning") == []
    assert listed(state="active") == ids[::-1]
    assert listed(state="cleared") == []
    assert client.get("/v1/alarms", params={"state": "gone"}, headers=keys.header()).status_code == 422
    assert client.get("/v1/alarms", params={"cursor": "x"}, headers=keys.header()).status_code == 400


def test_acknowledge_once_with_a_note(
    client: TestClient, keys: Keys, sensors: dict[str, int], api_database_url: str
) -> None:
    rows(
        api_database_url,
        "INSERT INTO notification_channels (channel_id, type, name, config)"
        " VALUES ('ops-hook', 'webhook', 'ops', '{}') RETURNING 1",
    )
    rule = {**RULE, "rule_id": "ack-rule", "channels": ["ops-hook", "deleted-channel"]}
    rule_id = _post(client, keys, rule).json()["rule_id"]
    alarm_id = _raise(api_database_url, rule_id, sensors["al-aq-1"], 70.0, ("ops-hook", "deleted-channel"))
    path = f"/v1/alarms/{alarm_id}/acknowledge"
    assert client.post(path, json={"note": "on it"}, headers=keys.header("read")).status_code == 403
    response = client.post(path, json={"note": "crew sent"}, headers=keys.header("write"))
    assert response.status_code == 200, response.text
    alarm = response.json()
    assert (alarm["state"], alarm["note"]) == ("acknowledged", "crew sent")
    assert alarm["acknowledged_at"].endswith("Z")
    again = client.post(path, headers=keys.header("write"))
    assert again.status_code == 409
    assert client.post("/v1/alarms/999999999/acknowledge", headers=keys.header("write")).status_code == 404
    assert client.get(f"/v1/alarms/{alarm_id}", headers=keys.header()).json() == alarm

    history = rows(
        api_database_url, "SELECT event, note FROM alarm_history WHERE alarm_id = %s ORDER BY id", (alarm_id,)
    )
    assert history == [("raised", None), ("acknowledged", "crew sent")]
    events = rows(
        api_database_url,
        "SELECT city, payload FROM events WHERE type = 'alarm' AND (payload->'alarm'->>'alarm_id')::int8 = %s"
        " ORDER BY id",
        (alarm_id,),
    )
    assert [(city, p["event"], p["alarm"]["state"]) for city, p in events] == [
        ("jakarta", "raised", "active"),
        ("jakarta", "acknowledged", "acknowledged"),
    ]
    # One delivery per event for the channel that exists; the deleted channel is skipped.
    deliveries = rows(
        api_database_url,
        "SELECT channel_id, event, payload FROM notification_deliveries WHERE alarm_id = %s ORDER BY created_at",
        (alarm_id,),
    )
    assert [(c, e) for c, e, _ in deliveries] == [("ops-hook", "raised"), ("ops-hook", "acknowledged")]
    assert deliveries[1][2] == {"event": "acknowledged", "alarm": alarm}
