"""The API's abuse controls, tried as an attacker would: over a real socket (uvicorn), with chunked bodies that
declare no length, floods, oversized pages and ranges, and a query that would run for ever."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.support.api import Keys, make_keys, serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(api_database_url: str) -> Keys:
    return make_keys(api_database_url)


@pytest.fixture(scope="module")
def base_url(api_database_url: str) -> Iterator[str]:
    with serving(
        api_database_url, rate_limit_per_s=5, rate_limit_burst=10, max_body_bytes=4096, statement_timeout_ms=500
    ) as url:
        yield url


@pytest.fixture(scope="module")
def unthrottled_url(api_database_url: str) -> Iterator[str]:
    """The same API without rate limiting, so the cap checks do not depend on the floods' order."""
    with serving(api_database_url, rate_limit_per_s=0) as url:
        yield url


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def test_a_chunked_body_without_a_declared_length_is_cut_at_the_limit(base_url: str, keys: Keys) -> None:
    headers = {**keys.header("admin"), "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post("/v1/sensors", content=_chunks(1 << 20), headers=headers)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_flood_from_one_key_is_throttled(base_url: str, keys: Keys) -> None:
    with httpx.Client(base_url=base_url, timeout=10, headers=keys.header("read")) as client:
        codes = [client.get("/v1/sensors").status_code for _ in range(30)]
    assert codes.count(429) >= 15  # burst 10, then 5/s: most of a quick flood is refused
    assert set(codes) <= {200, 429}


def test_made_up_keys_do_not_escape_the_rate_limit(base_url: str) -> None:
    # A new random token per request must not buy a fresh bucket each time (and a database lookup each).
    with httpx.Client(base_url=base_url, timeout=10) as client:
        codes = [
            client.get("/v1/sensors", headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}).status_code
            for _ in range(40)
        ]
    assert set(codes) <= {401, 429}
    assert codes.count(429) >= 20, codes


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/sensors", {"limit": 100_000}),
        ("/v1/sensors", {"limit": -1}),
        ("/v1/sensors", {"cursor": "A" * 10_000}),
        ("/v1/rejected", {"start": "1970-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}),
        ("/v1/sensors/aq-1/readings", {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),
        ("/v1/sensors/aq-1/aggregates", {"window": "1m", "start": "2000-01-01T00:00:00Z"}),
        ("/v1/sensors/aq-1/readings", {"start": "2026-01-01T00:00:00"}),  # no offset
    ],
)
def test_pages_and_ranges_are_capped(unthrottled_url: str, keys: Keys, path: str, params: dict[str, object]) -> None:
    with httpx.Client(base_url=unthrottled_url, timeout=10, headers=keys.header("read")) as client:
        response = client.get(path, params=params)  # type: ignore[arg-type]
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
