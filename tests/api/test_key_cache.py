"""The API key cache: requests that miss together share one lookup, and a revocation wins over a lookup under way."""

from __future__ import annotations

import asyncio

import pytest

from api.access import KeyCache
from livinglab.storage.keys import ApiKey, Scope

KEY = ApiKey(7, Scope.READ, "dashboard", frozenset({"jakarta"}))


class Lookups:
    """A stand-in for the database lookup of one key: counts its calls, answers when released."""

    def __init__(self, answer: ApiKey | None = KEY, error: Exception | None = None) -> None:
        self.calls = 0
        self.answer = answer
        self.error = error
        self.release = asyncio.Event()

    async def __call__(self) -> ApiKey | None:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.answer


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_that_miss_together_share_one_lookup() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=60), Lookups()
        waiting = [asyncio.ensure_future(cache.lookup(b"h", load)) for _ in range(40)]
        await _settle()
        assert load.calls == 1
        load.release.set()
        assert await asyncio.gather(*waiting) == [KEY] * 40
        assert await cache.lookup(b"h", load) == KEY  # cached now
        assert load.calls == 1
        assert cache.get(b"h") == (True, KEY)

    asyncio.run(scenario())


def test_an_unknown_key_is_remembered_as_unknown() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=60), Lookups(answer=None)
        load.release.set()
        assert await cache.lookup(b"h", load) is None
        assert cache.get(b"h") == (True, None)
        assert load.calls == 1

    asyncio.run(scenario())


def test_a_revocation_during_a_lookup_keeps_its_answer_out_of_the_cache() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=60), Lookups()
        first = asyncio.ensure_future(cache.lookup(b"h", load))
        await _settle()
        cache.forget(b"h")  # revoked while the lookup read the key as live
        load.release.set()
        assert await first == KEY  # the request that asked before the revocation
        assert cache.get(b"h") == (False, None)
        load.answer = None  # the database now says revoked
        assert await cache.lookup(b"h", load) is None
        assert load.calls == 2

    asyncio.run(scenario())


def test_a_failed_lookup_fails_every_waiting_request_and_is_not_cached() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=60), Lookups(error=OSError("database down"))
        waiting = [asyncio.ensure_future(cache.lookup(b"h", load)) for _ in range(3)]
        await _settle()
        load.release.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert [str(r) for r in results] == ["database down"] * 3
        load.error = None
        assert await cache.lookup(b"h", load) == KEY
        assert load.calls == 2

    asyncio.run(scenario())


def test_a_request_that_goes_away_does_not_cancel_the_lookup_for_the_others() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=60), Lookups()
        leaving = asyncio.ensure_future(cache.lookup(b"h", load))
        staying = asyncio.ensure_future(cache.lookup(b"h", load))
        await _settle()
        leaving.cancel()
        await _settle()
        load.release.set()
        assert await staying == KEY
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert load.calls == 1

    asyncio.run(scenario())


def test_without_a_cache_each_miss_still_shares_the_lookup_under_way_but_keeps_nothing() -> None:
    async def scenario() -> None:
        cache, load = KeyCache(ttl_s=0), Lookups()
        waiting = [asyncio.ensure_future(cache.lookup(b"h", load)) for _ in range(5)]
        await _settle()
        load.release.set()
        assert await asyncio.gather(*waiting) == [KEY] * 5
        assert cache.get(b"h") == (False, None)
        assert await cache.lookup(b"h", load) == KEY
        assert load.calls == 2

    asyncio.run(scenario())
