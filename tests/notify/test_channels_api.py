"""`/v1/notification-channels`: creating, reading, listing and deleting channels, their validation, secrets that
are never served back, and a channel's delivery log."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from livinglab.notifications import sign, signature_valid
from tests.support.api import Keys

pytestmark = pytest.mark.integration

PATH = "/v1/notification-channels"
SECRET = "a-secret-of-the-receiver-0123"


def _create(client: TestClient, keys: Keys, body: dict[str, Any]) -> Any:
    return client.post(PATH, json=body, headers=keys.header("admin"))


def test_a_webhook_channel_is_created_and_its_secret_is_never_served(client: TestClient, keys: Keys) -> None:
    response = _create(
        client, keys, {"channel_id": "ops-hook", "type": "webhook", "url": "http://127.0.0.1:9/h", "secret": SECRET}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["channel_id"] == "ops-hook"
    assert created["name"] == "ops-hook"
    assert created["secret"] is None, "a secret the caller gave is not echoed"
    assert created["secret_hint"] == "…0123"
    for served in (
        client.get(f"{PATH}/ops-hook", headers=keys.header("admin")).json(),
        client.get(PATH, headers=keys.header("admin")).json()["items"][0],
    ):
        assert SECRET not in str(served)
        assert "secret" not in served
        assert served["url"] == "http://127.0.0.1:9/h"


def test_a_secret_made_by_the_server_is_answered_once(client: TestClient, keys: Keys) -> None:
    created = _create(client, keys, {"type": "webhook", "url": "https://hooks.example.org/x"}).json()
    secret = created["secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 32
    assert created["channel_id"].startswith("ch-")
    again = client.get(f"{PATH}/{created['channel_id']}", headers=keys.header("admin")).json()
    assert secret not in str(again)
    assert again["secret_hint"] == "…" + secret[-4:]


def test_a_password_in_a_webhook_url_is_masked(client: TestClient, keys: Keys) -> None:
    body = {"type": "webhook", "url": "https://user:hunter2@hooks.example.org/x?a=1", "secret": SECRET}
    created = _create(client, keys, body).json()
    assert created["url"] == "https://user:***@hooks.example.org/x?a=1"


def test_an_mqtt_channel_defaults_to_the_city_alarm_topic(client: TestClient, keys: Keys) -> None:
    created = _create(client, keys, {"type": "mqtt", "name": "broker"}).json()
    assert created["topic"] == "livinglab/v1/{city}/alarms"
    custom = _create(client, keys, {"type": "mqtt", "topic": "ops/{city}/{severity}"}).json()
    assert custom["topic"] == "ops/{city}/{severity}"


def test_an_email_channel_takes_one_address_or_several(client: TestClient, keys: Keys) -> None:
    one = _create(client, keys, {"type": "email", "to": "ops@example.org"}).json()
    assert one["to"] == ["ops@example.org"]
    two = _create(client, keys, {"type": "email", "to": ["a@example.org", "b@example.org"]}).json()
    assert two["to"] == ["a@example.org", "b@example.org"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"type": "webhook", "secret": SECRET}, "needs a url"),
        ({"type": "webhook", "url": "ftp://example.org/x", "secret": SECRET}, "http://"),
        ({"type": "webhook", "url": "http:///nohost", "secret": SECRET}, "no host"),
        ({"type": "webhook", "url": "http://example.org:99999/", "secret": SECRET}, "port"),
        ({"type": "webhook", "url": "http://example.org/", "secret": "short"}, "at least 16"),
        ({"type": "webhook", "url": "http://example.org/", "topic": "x"}, "takes no topic"),
        ({"type": "mqtt", "topic": "alarms/#"}, "wildcards"),
        ({"type": "mqtt", "topic": "alarms/{sensor}"}, "may name only"),
        ({"type": "mqtt", "topic": "$SYS/x"}, "broker"),
        ({"type": "mqtt", "topic": "a/{city!r}"}, "may name only"),
        ({"type": "email"}, "needs `to`"),
        ({"type": "email", "to": "not an address"}, "not an email address"),
        ({"type": "email", "to": "a@example.org\r\nBcc: x@example.org"}, "not an email address"),
        ({"type": "sms", "to": "+62"}, "type"),
        ({"type": "mqtt", "channel_id": "bad id"}, "channel_id"),
        ({"type": "mqtt", "cities": ["Not A City"]}, "cities"),
        ({"type": "mqtt", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_channel_is_refused_with_422(client: TestClient, keys: Keys, body: dict[str, Any], words: str) -> None:
    response = _create(client, keys, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.text
    assert client.get(PATH, headers=keys.header("admin")).json()["items"] == []


def test_channels_need_the_admin_scope(client: TestClient, keys: Keys) -> None:
    body = {"type": "mqtt"}
    assert client.post(PATH, json=body, headers=keys.header("write")).status_code == 403
    assert client.get(PATH, headers=keys.header("read")).status_code == 403
    assert client.get(PATH).status_code == 401


def test_a_channel_id_is_taken_once_and_a_deleted_channel_is_gone(client: TestClient, keys: Keys) -> None:
    assert _create(client, keys, {"channel_id": "dup", "type": "mqtt"}).status_code == 201
    assert _create(client, keys, {"channel_id": "dup", "type": "mqtt"}).status_code == 409
    assert client.delete(f"{PATH}/dup", headers=keys.header("admin")).status_code == 204
    assert client.delete(f"{PATH}/dup", headers=keys.header("admin")).status_code == 404
    assert client.get(f"{PATH}/dup", headers=keys.header("admin")).status_code == 404
    assert client.get(f"{PATH}/dup/deliveries", headers=keys.header("admin")).status_code == 404


def test_the_list_pages_and_filters_by_type(client: TestClient, keys: Keys) -> None:
    for number in range(5):
        _create(
            client,
            keys,
            {"channel_id": f"c{number}", "type": "mqtt" if number % 2 else "email", "to": "ops@example.org"}
            if number % 2 == 0
            else {"channel_id": f"c{number}", "type": "mqtt"},
        )
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(PATH, params=params, headers=keys.header("admin")).json()
        seen += [item["channel_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    mqtt = client.get(PATH, params={"type": "mqtt"}, headers=keys.header("admin")).json()["items"]
    assert [c["channel_id"] for c in mqtt] == ["c1", "c3"]


def _alarm(conn: psycopg.Connection[Any]) -> int:
    """A rule and an alarm of a new sensor, written straight into the tables."""
    from tests.support import sensors

    sensor_id = f"aq-{uuid.uuid4().hex[:6]}"
    key = sensors.register(conn, [sensors.air(sensor_id, "jakarta", "Menteng")])[sensor_id]
    conn.execute(
        "INSERT INTO alarm_rules (rule_id, name, metric, op, threshold, clear_threshold, severity)"
        " VALUES ('ispu-high', 'ISPU high', 'ispu', '>', 100, 100, 'warning') ON CONFLICT DO NOTHING"
    )
    row = conn.execute(
        "INSERT INTO alarms (rule_id, sensor_key, city, district, severity, state, raised_at, value, last_value)"
        " VALUES ('ispu-high', %s, 'jakarta', 'Menteng', 'warning', 'active', now(), 120, 120) RETURNING alarm_id",
        (key,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_delivery_log_lists_a_channels_deliveries_newest_first(
    client: TestClient, keys: Keys, fresh_database_url: str
) -> None:
    _create(client, keys, {"channel_id": "log", "type": "mqtt"})
    with psycopg.connect(fresh_database_url) as conn:
        alarm_id = _alarm(conn)
        for number, (event, status) in enumerate(
            (("raised", "delivered"), ("acknowledged", "pending"), ("cleared", "failed"))
        ):
            conn.execute(
                "INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload, status, attempts,"
                " last_error, created_at) VALUES ('log', %s, %s, %s, %s, %s, %s, now() + %s * interval '1 s')",
                (
                    alarm_id,
                    event,
                    Jsonb({"event": event}),
                    status,
                    number + 1,
                    None if status == "delivered" else "HTTP 500",
                    number,
                ),
            )
        conn.commit()
    items, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{PATH}/log/deliveries", params=params, headers=keys.header("admin"))
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert [(i["event"], i["status"], i["attempts"]) for i in items] == [
        ("cleared", "failed", 3),
        ("acknowledged", "pending", 2),
        ("raised", "delivered", 1),
    ]
    assert items[0]["last_error"] == "HTTP 500"
    assert items[2]["last_error"] is None
    assert items[1]["next_attempt_at"] is not None
    assert items[0]["next_attempt_at"] is None
    assert all(i["alarm_id"] == alarm_id for i in items)
    failed = client.get(f"{PATH}/log/deliveries", params={"status": "failed"}, headers=keys.header("admin")).json()
    assert [i["event"] for i in failed["items"]] == ["cleared"]
    bad = client.get(f"{PATH}/log/deliveries", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=keys.header("admin"))
    assert bad.status_code == 400


def test_signatures_are_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"event": "raised", "alarm": {"alarm_id": 1}}'
    header = sign("k" * 20, body)
    assert header.startswith("sha256=")
    assert len(header) == 7 + 64
    assert signature_valid("k" * 20, body, header)
    assert not signature_valid("k" * 20, body + b" ", header)
    assert not signature_valid("j" * 20, body, header)
