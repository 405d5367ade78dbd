"""A database link that goes silent under the API: requests get 503 instead of hanging, and the API recovers.

The fault proxy (`tests.support.proxy`) sits between the API's pool and PostgreSQL and blackholes the link: TCP stays
up, nothing is forwarded, so neither the server's statement timeout nor the kernel can end the wait.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.api import Keys, serving
from tests.support.proxy import FaultProxy
from tests.support.roles import wait_until

pytestmark = pytest.mark.integration

#: The API's statement timeout here; its deadline is this plus `api.deps.DEADLINE_GRACE_S` (5 s).
STATEMENT_TIMEOUT_MS = 1000


def test_a_silent_database_gets_503_and_the_api_recovers(api_database_url: str, keys: Keys) -> None:
    with (
        FaultProxy(int(urlsplit(api_database_url).port or 5432)) as proxy,
        serving(
            proxy.route(api_database_url),
            statement_timeout_ms=STATEMENT_TIMEOUT_MS,
            response_cache_s=0,
        ) as base,
        # A hung request would end here, at the client's own timeout, and fail the test.
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        headers = keys.header()
        assert client.get("/v1/sensors", headers=headers).status_code == 200  # the key is cached from here on
        proxy.blackhole()
        for path in ("/v1/sensors", "/v1/air/ispu"):  # a plain route and a cached-list route
            answer = client.get(path, headers=headers)
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            # Cut while querying ("unavailable"), or no connection to be had while the pool reconnects through the
            # silent link ("busy or unavailable").
            assert "unavailable" in answer.json()["detail"]
        proxy.pass_through()
        # The cut connections were replaced: the API answers again without a restart.
        wait_until(lambda: client.get("/v1/sensors", headers=headers).status_code == 200, timeout_s=60)
        assert client.get("/v1/air/ispu", headers=headers).status_code == 200
