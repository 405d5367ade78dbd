"""Single flight: callers that ask for the same key while its work is under way share that one run of it.

The response cache (`api.jsonpage.PageSource`) and the key cache (`api.access.KeyCache`) both use it, so an entry
that expires under load costs one database query, not one per waiting request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """The runs under way, by key."""

    def __init__(self) -> None:
        self._in_flight: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """The result of the run under way for `key`, or of `work()` started now. An exception of the run is raised
        to every caller that waits for it; nothing is kept once it ends."""
        flight = self._in_flight.get(key)
        if flight is None:
            # Its own task: a caller that goes away does not cancel the run for the others.
            flight = asyncio.ensure_future(work())
            self._in_flight[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        return await asyncio.shield(flight)

    def forget(self, key: K) -> None:
        """Let the next caller of `key` start a run of its own (the one under way still answers its callers)."""
        self._in_flight.pop(key, None)

    def _landed(self, key: K, done: asyncio.Future[V]) -> None:
        if self._in_flight.get(key) is done:  # not a later run started after `forget`
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: the waiting callers re-raise it themselves
