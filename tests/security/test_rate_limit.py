"""The rate limiter against the holes found in it, over a real socket: made-up tokens from one address must not
throttle valid keys from that address, a spoofed `X-Forwarded-For` must not buy fresh buckets, and a key written
with extra spaces must not get a bucket of its own."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import psycopg
import pytest

from livinglab.storage.keys import Scope, create_key
from tests.support.api import serving

pytestmark = pytest.mark.integration

RATE_PER_S = 0.2  # slow enough that a busy machine's slower requests refill next to nothing
LIMITS = {"rate_limit_per_s": RATE_PER_S, "rate_limit_burst": 10, "public_read": True}


@pytest.fixture(scope="module")
def database(api_database_url: str) -> str:
    return api_database_url


def _key(url: str) -> str:
    with psycopg.connect(url) as conn:
        key = create_key(conn, Scope.READ, name="rate")
        conn.commit()
    return key


def _codes(base: str, n: int, **request: Any) -> list[int]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [client.get("/v1/sensors", **request).status_code for _ in range(n)]


def test_made_up_tokens_do_not_throttle_valid_keys_from_the_same_address(database: str) -> None:
    key = _key(database)
    valid = {"Authorization": f"Bearer {key}"}
    with serving(database, **LIMITS) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/v1/sensors", headers=valid).status_code == 200
        started = time.monotonic()
        made_up = [
            client.get("/v1/sensors", headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}).status_code
            for _ in range(300)
        ]
        elapsed_s = time.monotonic() - started
        after = [client.get("/v1/sensors", headers=valid).status_code for _ in range(5)]
    assert set(made_up) == {401, 429}
    assert made_up.count(401) <= 10 + RATE_PER_S * elapsed_s + 1  # the burst, and what the rate refilled meanwhile
    assert after == [200] * 5


def test_forwarded_for_from_an_untrusted_peer_buys_no_fresh_bucket(database: str) -> None:
    with serving(database, **LIMITS) as base, httpx.Client(base_url=base, timeout=10) as client:
        codes = [
            client.get("/v1/sensors", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(40)
        ]
    assert set(codes) == {200, 429}
    assert codes.count(429) >= 20, codes


def test_forwarded_for_from_a_trusted_proxy_names_the_client(database: str) -> None:
    with serving(database, trusted_proxies="127.0.0.1", **LIMITS) as base:
        # Each client behind the proxy has its own bucket ...
        spread = [_codes(base, 1, headers={"X-Forwarded-For": f"198.51.100.{i}"})[0] for i in range(40)]
        # ... and what a client writes left of the address the proxy appended changes nothing.
        spoofed = [_codes(base, 1, headers={"X-Forwarded-For": f"10.0.0.{i}, 203.0.113.7"})[0] for i in range(40)]
    assert spread == [200] * 40
    assert set(spoofed) == {200, 429}
    assert spoofed.count(429) >= 20, spoofed


def test_a_key_written_differently_shares_one_bucket(database: str) -> None:
    key = _key(database)
    forms = [f"Bearer {key}", f"Bearer   {key}", f"bearer {key}", f"BEARER \t {key}"]
    with serving(database, **LIMITS) as base, httpx.Client(base_url=base, timeout=10) as client:
        codes = [client.get("/v1/sensors", headers={"Authorization": forms[i % 4]}).status_code for i in range(40)]
    assert set(codes) == {200, 429}  # every form authenticates, and they draw on one budget
    assert codes.count(429) >= 20, codes
