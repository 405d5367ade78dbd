"""Authentication, scopes, public reads, rate limiting, body size limit and the API's own database pool."""

from __future__ import annotations

import gc
import hashlib

import psycopg
import pytest

from livinglab.storage.keys import Scope, create_key
from tests.support.api import Keys, api_client, assert_problem, metric_samples

pytestmark = pytest.mark.integration

AIR = {"sensor_id": "aq-auth", "city": "jakarta", "district": "Menteng", "kind": "air", "lat": -6.2, "lon": 106.8}


def test_no_key_is_401(client, keys: Keys) -> None:
    response = client.get("/v1/sensors")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["ll_" + "x" * 43, "not-a-key", ""])
def test_wrong_key_is_401(client, keys: Keys, token: str) -> None:
    assert_problem(client.get("/v1/air/ispu", headers={"Authorization": f"Bearer {token}"}), 401)


def test_scopes_are_ordered(client, keys: Keys) -> None:
    for scope in ("read", "write", "admin"):
        assert client.get("/v1/sensors", headers=keys.header(scope)).status_code == 200
    body = assert_problem(client.post("/v1/sensors", json=AIR, headers=keys.header("read")), 403)
    assert "sensors:write" in body["detail"]
    assert client.post("/v1/sensors", json=AIR, headers=keys.header("write")).status_code == 201
    assert client.delete("/v1/sensors/aq-auth", headers=keys.header("admin")).status_code == 204


def test_open_routes_need_no_key(client) -> None:
    for path in ("/", "/docs", "/openapi.json", "/metrics", "/v1/health", "/v1/version"):
        assert client.get(path).status_code == 200, path


def test_public_read_opens_reads_but_never_writes(api_database_url: str, keys: Keys) -> None:
    with api_client(api_database_url, public_read=True) as public:
        assert public.get("/v1/sensors").status_code == 200
        assert public.get("/v1/air/ispu").status_code == 200
        assert_problem(public.post("/v1/sensors", json=AIR), 401)
        assert_problem(public.post("/v1/sensors", json=AIR, headers=keys.header("read")), 403)
        assert_problem(public.post("/v1/rejected/1/replay"), 401)
        assert_problem(public.delete("/v1/sensors/x"), 401)
        # A key that is presented is still checked.
        assert_problem(public.get("/v1/sensors", headers={"Authorization": "Bearer wrong"}), 401)


def test_keys_are_stored_hashed(api_database_url: str, keys: Keys) -> None:
    with psycopg.connect(api_database_url) as conn:
        rows = conn.execute("SELECT key_hash, key_prefix, scope, name FROM api_keys").fetchall()
    stored = {r[3]: r for r in rows}
    for name, key in (("test-read", keys.read), ("test-write", keys.write), ("test-admin", keys.admin)):
        key_hash, prefix, _scope, _ = stored[name]
        assert bytes(key_hash) == hashlib.sha256(key.encode()).digest()
        assert len(prefix) < 10
        assert key.startswith(prefix)
        assert all(key not in str(v) for r in rows for v in r)


def test_revoked_key_stops_working(api_database_url: str) -> None:
    with psycopg.connect(api_database_url) as conn:
        key = create_key(conn, Scope.READ, name="to-revoke")
        conn.commit()
    with api_client(api_database_url, key_cache_s=0) as c:
        headers = {"Authorization": f"Bearer {key}"}
        assert c.get("/v1/sensors", headers=headers).status_code == 200
        with psycopg.connect(api_database_url) as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'to-revoke'")
            conn.commit()
        assert_problem(c.get("/v1/sensors", headers=headers), 401)


def test_rate_limit_answers_429_with_retry_after(api_database_url: str, keys: Keys) -> None:
    with api_client(api_database_url, rate_limit_per_s=0.01, rate_limit_burst=3) as c:
        statuses = [c.get("/v1/sensors", headers=keys.header("read")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = c.get("/v1/sensors", headers=keys.header("read"))
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # Other keys have their own budget; probes are never limited.
        assert c.get("/v1/sensors", headers=keys.header("admin")).status_code == 200
        assert all(c.get("/v1/health").status_code == 200 for _ in range(5))


def test_body_size_limit_answers_413(api_database_url: str, keys: Keys) -> None:
    with api_client(api_database_url, max_body_bytes=512) as c:
        big = {**AIR, "name": "x" * 200, "district": "y" * 100, "extra": "z" * 400}
        assert_problem(c.post("/v1/sensors", json=big, headers=keys.header("write")), 413)

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b" " * 100

        response = c.post(
            "/v1/sensors",
            content=chunks(),
            headers={**keys.header("write"), "Content-Type": "application/json"},
        )
        assert_problem(response, 413)
        assert (
            c.post("/v1/sensors", json={**AIR, "sensor_id": "small"}, headers=keys.header("write")).status_code == 201
        )


def test_api_pool_is_its_own_with_a_statement_timeout(api_database_url: str) -> None:
    with api_client(api_database_url, statement_timeout_ms=1234) as c:
        pool = c.app.state.pool

        async def settings() -> tuple[str, str]:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT current_setting('statement_timeout'), application_name"
                    " FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                )
                row = await cur.fetchone()
                return row[0], row[1]

        timeout, application = c.portal.call(settings)
        assert timeout == "1234ms"
        assert application == "livinglab-api"


def test_slow_query_is_a_503_problem(api_database_url: str, keys: Keys) -> None:
    with psycopg.connect(api_database_url) as conn:
        # Hold a lock the route needs, so its query runs into the statement timeout.
        conn.execute("LOCK TABLE sensors IN ACCESS EXCLUSIVE MODE")
        with api_client(api_database_url, statement_timeout_ms=200) as c:
            response = c.get("/v1/sensors", headers=keys.header("read"))
        conn.rollback()
    body = assert_problem(response, 503)
    assert "longer" in body["detail"]
    assert response.headers["retry-after"]


def test_metrics_count_requests_per_route_template(client, keys: Keys) -> None:
    for sensor_id in ("a", "b", "c"):
        client.get(f"/v1/sensors/{sensor_id}", headers=keys.header("read"))
    text = client.get("/metrics").text
    assert 'livinglab_api_requests_total{method="GET",route="/v1/sensors/{sensor_id}",status="404"}' in text
    assert 'livinglab_api_request_duration_seconds_count{method="GET",route="/v1/sensors/{sensor_id}"}' in text
    assert "/v1/sensors/a" not in text


def test_metrics_time_the_garbage_collector(client) -> None:
    before = _gc_passes(client.get("/metrics").text)
    gc.collect()
    after = _gc_passes(client.get("/metrics").text)
    assert after["2"] >= before["2"] + 1
    assert set(after) == {"0", "1", "2"}


def _gc_passes(text: str) -> dict[str, float]:
    return {
        sample.labels["generation"]: sample.value
        for sample in metric_samples(text, "livinglab_api_gc_pause_seconds")
        if sample.name.endswith("_count")
    }
