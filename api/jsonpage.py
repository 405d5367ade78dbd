"""Pages of a list built as JSON inside PostgreSQL.

The busiest lists (indices, traffic, aggregates, service levels) are what dashboards poll. Building their items
with `json_build_object` in the query and handing the text straight to the client keeps the API process, which is
single-threaded per worker, out of per-row work: one row comes back per request instead of a hundred that would
each be decoded, validated and encoded again. The response models still describe these answers in the OpenAPI
document, and the test suite checks every answer against them.
"""

from __future__ import annotations

import json
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection, sql
from starlette.responses import Response

from api.access import request_access
from api.deps import connection
from api.flight import SingleFlight
from api.pagination import encode_cursor

#: Helps the planner and keeps the page's query in one place.
_PAGE = sql.SQL(
    "WITH page AS ({rows}) SELECT coalesce(json_agg(item ORDER BY i) FILTER (WHERE i <= %(_limit)s), '[]')::text,"
    " max(ckey::text) FILTER (WHERE i = %(_limit)s), count(*) FROM page"
)


def page_query(rows: sql.Composable) -> str:
    """The page query around `rows`, rendered to text. Routes build their queries once (at import, or cached),
    so a request neither composes nor renders SQL."""
    return _PAGE.format(rows=rows).as_string()


async def json_page(
    conn: AsyncConnection[Any],
    query: str,
    params: dict[str, Any],
    limit: int,
    *,
    if_empty: Callable[[], Awaitable[object]] | None = None,
    prepare: bool | None = None,
) -> Response:
    """Answer `{"items": [...], "next_cursor": ...}` from `query`, made by `page_query(rows)`.

    `rows` selects `i` (the row number in page order, from 1), `item` (the item as json) and `ckey` (the cursor
    key of the item, a json array), ordered by `i` and limited to `%(_fetch)s` rows (one more than the page).
    `if_empty` runs when the query found nothing: a route that looks its subject up inside the query (one round
    trip instead of two) checks there whether the subject exists, and raises if not. `prepare` as in psycopg's
    `execute`: False plans the query for each request's parameters (for queries whose generic plan is slower).
    """
    cur = await conn.execute(query, {**params, "_limit": limit, "_fetch": limit + 1}, prepare=prepare)
    row = await cur.fetchone()
    assert row is not None
    items, last_key, fetched = row
    if not fetched and if_empty is not None:
        await if_empty()
    cursor = encode_cursor(json.loads(last_key)) if fetched > limit and last_key is not None else None
    body = b'{"items":' + items.encode() + b',"next_cursor":' + json.dumps(cursor).encode() + b"}"
    return Response(body, media_type="application/json")


@dataclass(slots=True)
class _Entry:
    generation: int
    expires: float
    response: Response


#: Each entry lives a random part of the TTL, from (1 - TTL_JITTER) of it to all of it. Entries filled together (a
#: dashboard's first round of requests, the round after new results) then expire at different moments, instead of
#: all missing in the same instant and queueing their queries behind each other.
TTL_JITTER = 0.25


class ResponseCache:
    """Recent answers of the JSON lists, per URL, for at most `ttl_s` seconds and only while nothing changed.

    Many operators' dashboards poll the same lists; between two processor rounds the answer is the same. An entry
    is dropped as soon as the event feed hears of new results or a registry change (`generation` moves), and after
    `ttl_s` in any case (so `at=now` answers age by at most that much). `ttl_s` 0 turns the cache off. Callers that
    see different cities never share an entry (the key holds `Access.cache_key`).
    """

    def __init__(self, ttl_s: float, max_entries: int = 2048) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Loads under way, by generation and URL (see PageSource.get).
        self.in_flight: SingleFlight[str, Response] = SingleFlight()

    def get(self, key: str, generation: int) -> Response | None:
        if generation < 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != generation or entry.expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.response

    def put(self, key: str, generation: int, response: Response) -> None:
        if self.ttl_s <= 0 or generation < 0:
            return
        ttl_s = self.ttl_s * (1.0 - TTL_JITTER * random.random())  # noqa: S311 - spreading expiries, not a secret
        self._entries[key] = _Entry(generation, time.monotonic() + ttl_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


Loader = Callable[[AsyncConnection[Any]], Awaitable[Response]]


class PageSource:
    """Where a list route gets its page: the cache, else the database (a connection is checked out only then).

    Concurrent requests for the same URL that miss the cache together share one query (single flight), so an
    expiring entry under load costs one query, not one per waiting client.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        state = request.app.state
        self._cache: ResponseCache = state.response_cache
        feed = state.event_feed
        # Without the LISTEN connection no change would be heard: serve from the database only.
        self._generation: int = feed.generation if feed.listening.is_set() else -1
        self._url = f"{request.url.path}?{request.url.query}"

    async def get(self, load: Loader) -> Response:
        """The cached answer, or the one another request is loading now, or `load(conn)` (then cached)."""
        # Read when the route asks for its page: its Access dependency has run by then.
        key = f"{request_access(self._request).cache_key}|{self._url}"
        if self._cache.ttl_s <= 0:  # cache off: every request queries the database
            return await self._load(load, key)
        hit = self._cache.get(key, self._generation)
        if hit is not None:
            return hit
        return await self._cache.in_flight.run(f"{self._generation}:{key}", lambda: self._load(load, key))

    async def _load(self, load: Loader, key: str) -> Response:
        state = self._request.app.state
        async with connection(state.pool, state.settings.pool_timeout_s, state.idle_check) as conn:
            response = await load(conn)
        self._cache.put(key, self._generation, response)
        return response

    async def page(self, query: str, params: dict[str, Any], limit: int, *, prepare: bool | None = None) -> Response:
        """`json_page(query)`, through the cache."""
        return await self.get(lambda conn: json_page(conn, query, params, limit, prepare=prepare))


async def page_source(request: Request) -> PageSource:
    return PageSource(request)


PageSourceDep = Annotated[PageSource, Depends(page_source)]
