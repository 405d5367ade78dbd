"""The live event feed behind `GET /v1/stream`.

One LISTEN connection per API process hears `livinglab_events` (the processor NOTIFYs the id of each event it
stores, see `livinglab.events`) and `livinglab_registry`, and wakes the connected clients (and moves the
generation that response caches key on). Each client then reads the events after the last
one it sent from the `events` table, so what a client receives never depends on a notification arriving: a
client that reconnects with `Last-Event-ID` gets what it missed, and a lost notification only delays delivery to
the next heartbeat, when clients look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from livinglab.resilience import Backoff, DatabasePolicy
from livinglab.storage import CHANNEL_EVENTS, CHANNEL_REGISTRY, connect_async

log = logging.getLogger(__name__)

#: Events read from the table per query.
_BATCH = 500
#: The listening connection is checked with a query at least this often.
_LIVENESS_S = 1.0


class EventFeed:
    """Wakes waiting clients whenever the processor announces an event."""

    def __init__(self, database_url: str, policy: DatabasePolicy) -> None:
        self._database_url = database_url
        self._policy = policy
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        #: Moves whenever results or the registry may have changed (response caches key on it).
        self.generation = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="livinglab-event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _wake(self) -> None:
        # Swap the event so that waiters hold the one that fires and later waiters get a fresh one.
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout_s: float) -> bool:
        """Wait until an event is announced (True) or `timeout_s` passes (False)."""
        changed = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    async def _listen(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                conn = await connect_async(
                    self._database_url, policy=self._policy, autocommit=True, application_name="livinglab-api-listen"
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL_EVENTS}")
                    await conn.execute(f"LISTEN {CHANNEL_REGISTRY}")
                    self.listening.set()
                    backoff.succeeded()
                    self._wake()  # clients look for what was stored while nobody listened
                    while True:
                        # In slices, with a query between them: a silent link fails the query (the policy's
                        # deadline), while a wait for notifications would simply never end.
                        async for _notify in conn.notifies(timeout=_LIVENESS_S, stop_after=1):
                            self._wake()
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                self._wake()  # nothing is heard now: cached answers must not outlive the connection
                delay = backoff.failed()
                log.warning("event feed lost its database connection (%s); reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    heartbeat_s: float
    max_backlog: int
    types: Collection[str] | None


async def _latest_id(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(id), 0) FROM events")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _events_after(pool: AsyncConnectionPool, after: int, types: Collection[str] | None) -> list[Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, type, payload::text FROM events WHERE id > %s"
            " AND (%s::text[] IS NULL OR type = ANY(%s)) ORDER BY id LIMIT %s",
            (after, list(types) if types else None, list(types) if types else None, _BATCH),
        )
        return await cur.fetchall()


def format_event(event_id: int, event_type: str, data: str) -> str:
    """One SSE message. `data` is compact JSON from PostgreSQL, which holds no raw newline."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n"


async def event_stream(
    pool: AsyncConnectionPool, feed: EventFeed, last_event_id: int | None, options: StreamOptions
) -> AsyncIterator[str]:
    """SSE text for one client: missed events (after `last_event_id`), then live ones, with heartbeats."""
    latest = await _latest_id(pool)
    if last_event_id is None or last_event_id > latest:
        after = latest
    elif latest - last_event_id > options.max_backlog:
        # Too far behind to replay event by event: tell the client to refetch the current state instead.
        after = latest
        yield format_event(latest, "resync", '{"reason": "backlog"}')
    else:
        after = last_event_id
    yield f"retry: 3000\n: connected, last event id {after}\n\n"
    while True:
        rows = await _events_after(pool, after, options.types)
        for event_id, event_type, data in rows:
            yield format_event(event_id, event_type, data)
            after = event_id
        if len(rows) == _BATCH:
            continue
        if not rows and not await feed.wait(options.heartbeat_s):
            yield ": heartbeat\n\n"
