"""The live event feed behind `GET /v1/stream`.

One `EventFeed` per API process follows the change-event feed of `livinglab.events` for every client: a connection
of its own LISTENs on `livinglab_events` and `livinglab_registry`, reads the events after its cursor whenever a
notification comes (and at least every `POLL_S`, so a lost notification costs at most that), keeps the newest
events in memory and wakes the clients. So N clients cost one query per change, not N. A client keeps its own
position in the feed: it is sent the events after it from memory, or, when it starts further back than memory
reaches (a reconnect with an old `Last-Event-ID`), from the `events` table until it has caught up. Event ids are
handed out in commit order (see `livinglab.events`), so neither path can skip an event or send one twice.

Outages. Heartbeats come from each client's own timer, never from the database. The feed's periodic query runs
under the API's database deadline, so a silent link is noticed within `POLL_S` plus the deadline; then the feed is
down (`/v1/health` says so), and every open stream ends cleanly with a comment saying why, so clients reconnect
(with `Last-Event-ID`) and are answered 503 until the feed is back, then resume where they left off. A client's
catch-up from the table uses the API's pool with its timeout and deadline, and ends the stream the same way when the
database fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from livinglab.events import Event, latest_event_id_async, read_events_async
from livinglab.resilience import Backoff, DatabasePolicy
from livinglab.storage import CHANNEL_EVENTS, CHANNEL_REGISTRY, connect_async, describe_error

log = logging.getLogger(__name__)

#: The feed reads the table at least this often, with or without a notification; it is also how often its
#: connection is checked.
POLL_S = 1.0
#: Events read from the table per query.
_BATCH = 500
#: The newest events kept in memory, by count and by payload size.
_MEMORY_EVENTS = 10_000
_MEMORY_BYTES = 16 * 1024 * 1024

#: Opens a pooled connection for one catch-up query (the API's `api.deps.connection`).
ConnectionSource = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class FeedDownError(Exception):
    """The event feed cannot follow the database now."""


class EventFeed:
    """Follows the event feed for every client of this API process (see the module docstring)."""

    def __init__(self, database_url: str, policy: DatabasePolicy) -> None:
        self._database_url = database_url
        self._policy = policy
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._memory: deque[Event] = deque()
        self._memory_bytes = 0
        #: Set while the feed follows the database (the response cache and the health check read it).
        self.listening = asyncio.Event()
        #: Why the feed is down (None while it is up).
        self.error: str | None = "not started"
        #: The last event id read: every committed event up to it has been seen.
        self.cursor = 0
        #: Memory holds every event with an id in (memory_start, cursor].
        self.memory_start = 0
        #: Moves whenever results or the registry may have changed (response caches key on it).
        self.generation = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="livinglab-event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- for clients ------------------------------------------------------------------------------------------------

    async def wait(self, timeout_s: float) -> bool:
        """Wait until new events are read or the feed's state changes (True), or `timeout_s` passes (False)."""
        changed = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    def events_after(self, after: int) -> list[Event]:
        """The events in memory after `after` (which must not be below `memory_start`), oldest first."""
        newer: list[Event] = []
        for event in reversed(self._memory):
            if event.id <= after:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def count_after(self, after: int) -> int | None:
        """How many events follow `after`, when memory reaches back that far (else None)."""
        return len(self.events_after(after)) if after >= self.memory_start else None

    # -- following ------------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        # Swap the event so that waiters hold the one that fires and later waiters get a fresh one.
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _remember(self, events: list[Event]) -> None:
        for event in events:
            self._memory.append(event)
            self._memory_bytes += len(event.data)
        while self._memory and (len(self._memory) > _MEMORY_EVENTS or self._memory_bytes > _MEMORY_BYTES):
            oldest = self._memory.popleft()
            self._memory_bytes -= len(oldest.data)
            self.memory_start = oldest.id

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            events = await read_events_async(conn, after=self.cursor, limit=_BATCH)
            if not events:
                return
            self._remember(events)
            self.cursor = events[-1].id
            self._wake()
            if len(events) < _BATCH:
                return

    async def _follow(self) -> None:
        backoff = Backoff(0.5, 10.0)
        started = False
        while True:
            try:
                conn = await connect_async(
                    self._database_url, policy=self._policy, autocommit=True, application_name="livinglab-api-feed"
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL_EVENTS}")
                    await conn.execute(f"LISTEN {CHANNEL_REGISTRY}")
                    if not started:  # the feed starts at its end; after an outage it reads on from its cursor
                        self.cursor = self.memory_start = await latest_event_id_async(conn)
                        started = True
                    await self._read(conn)
                    self.error = None
                    self.listening.set()
                    backoff.succeeded()
                    self._wake()  # caches refill: what changed while nobody listened is in the database now
                    while True:
                        # Waiting for notifications never notices a silent link; the read after it does (deadline).
                        async for _notify in conn.notifies(timeout=POLL_S, stop_after=1):
                            self._wake()
                        await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = describe_error(exc)
                self.listening.clear()
                self._wake()  # clients end their streams; cached answers must not outlive the connection
                delay = backoff.failed()
                log.warning("event feed lost its database connection (%s); reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    heartbeat_s: float
    max_backlog: int
    types: Collection[str] | None
    #: Only events of these cities (None: of every city, and events of no city).
    cities: Collection[str] | None = None

    def wants(self, event: Event) -> bool:
        return (self.types is None or event.type in self.types) and (self.cities is None or event.city in self.cities)


def format_event(event_id: int, event_type: str, data: str) -> str:
    """One SSE message. `data` is compact JSON from PostgreSQL, which holds no raw newline."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n"


HEARTBEAT = ": heartbeat\n\n"


async def start_position(
    feed: EventFeed, source: ConnectionSource, last_event_id: int | None, max_backlog: int
) -> tuple[int, bool]:
    """Where a new client starts in the feed, and whether it missed too much to be replayed (it is sent a `resync`
    event instead). Raises `FeedDownError`, or a database error when the table had to be asked."""
    if feed.error is not None:
        raise FeedDownError(feed.error)
    cursor = feed.cursor
    if last_event_id is None:
        return cursor, False
    if last_event_id > cursor:
        # Ahead of this process's feed: another API process may have read further. An id the table does not
        # reach comes from another database (a restore): start at the end.
        async with source() as conn:
            latest = await latest_event_id_async(conn)
        return (last_event_id, False) if last_event_id <= latest else (max(cursor, latest), False)
    missed = feed.count_after(last_event_id)
    if missed is None:
        async with source() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE id > %s AND id <= %s LIMIT %s) e",
                (last_event_id, cursor, max_backlog + 1),
            )
            row = await cur.fetchone()
        missed = int(row[0]) if row else 0
    if missed > max_backlog:
        return cursor, True
    return last_event_id, False


async def event_stream(
    feed: EventFeed, source: ConnectionSource, start: int, resync: bool, options: StreamOptions
) -> AsyncIterator[str]:
    """SSE text for one client from position `start`: missed events, then live ones, with heartbeats; ends cleanly
    when the feed or the database fails it."""
    after = start
    if resync:
        # Too far behind to replay event by event: the client refetches the current state instead.
        yield format_event(start, "resync", '{"reason": "backlog"}')
    # A message with an id and no data moves the client's last event id without an event: a client that drops before
    # its first event resumes from here, not from wherever the feed is when it comes back.
    yield f"retry: 3000\nid: {after}\n: connected, last event id {after}\n\n"
    beat_at = time.monotonic() + options.heartbeat_s
    while True:
        if feed.error is not None:
            yield f": the event feed is down ({feed.error}); reconnect with Last-Event-ID\n\n"
            return
        if after < feed.memory_start:
            catch_up = asyncio.ensure_future(_read_table(source, after, feed.cursor, options))
            try:
                while not catch_up.done():
                    if not await _wait_done(catch_up, beat_at):
                        yield HEARTBEAT
                        beat_at = time.monotonic() + options.heartbeat_s
                events, after = catch_up.result()
            except (psycopg.Error, PoolTimeout) as exc:
                yield f": the database is unavailable ({describe_error(exc)}); reconnect with Last-Event-ID\n\n"
                return
            finally:
                catch_up.cancel()
        else:
            events = [e for e in feed.events_after(after) if options.wants(e)]
            after = max(after, feed.cursor)
        for event in events:
            yield format_event(event.id, event.type, event.data)
        if events:
            beat_at = time.monotonic() + options.heartbeat_s
        elif after >= feed.cursor and not await feed.wait(max(0.0, beat_at - time.monotonic())):
            yield HEARTBEAT
            beat_at = time.monotonic() + options.heartbeat_s


async def _wait_done(task: asyncio.Future[Any], beat_at: float) -> bool:
    """Wait for `task` until the next heartbeat is due; True when it is done."""
    done, _ = await asyncio.wait({task}, timeout=max(0.0, beat_at - time.monotonic()))
    return bool(done)


async def _read_table(
    source: ConnectionSource, after: int, until: int, options: StreamOptions
) -> tuple[list[Event], int]:
    """One batch of the client's events after `after` from the table, and its new position: the last event read,
    or `until` when the batch reaches the end of what the feed has seen (every event up to it is committed)."""
    async with source() as conn:
        events = await read_events_async(
            conn, after=after, types=options.types, cities=options.cities, limit=_BATCH, until=until
        )
    return events, (events[-1].id if len(events) == _BATCH else until)
