"""The response cache's entries expire at moments spread over the end of the TTL, never after it."""

from __future__ import annotations

import time

from starlette.responses import Response

from api.jsonpage import TTL_JITTER, ResponseCache


def test_entries_filled_together_expire_at_different_moments_within_the_ttl() -> None:
    cache = ResponseCache(ttl_s=1.0)
    before = time.monotonic()
    for i in range(200):
        cache.put(f"/v1/sensors/s-{i}/aggregates", 0, Response(b"[]"))
    after = time.monotonic()
    expires = [entry.expires for entry in cache._entries.values()]
    assert len(expires) == 200
    assert min(expires) >= before + 1.0 - TTL_JITTER
    assert max(expires) <= after + 1.0
    # Spread over the window rather than all in one instant (200 uniform draws leave no real chance of less).
    assert max(expires) - min(expires) > TTL_JITTER / 2


def test_an_entry_is_served_until_it_expires_and_then_dropped() -> None:
    response = Response(b"[]")
    # A TTL far longer than the test, so a pause of the machine between two lines cannot expire the entry early.
    cache = ResponseCache(ttl_s=60.0)
    cache.put("/v1/air/ispu", 3, response)
    assert cache.get("/v1/air/ispu", 3) is response
    assert cache.get("/v1/air/ispu", 4) is None  # a newer generation: results changed
    short = ResponseCache(ttl_s=0.05)
    short.put("/v1/air/ispu", 3, response)
    time.sleep(0.06)  # longer than the TTL: a slower machine only sleeps longer
    assert short.get("/v1/air/ispu", 3) is None
    assert "/v1/air/ispu" not in short._entries
