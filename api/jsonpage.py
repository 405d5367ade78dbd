"""Pages of a list built as JSON inside PostgreSQL.

The busiest lists (indices, traffic, aggregates, service levels) are what dashboards poll. Building their items
with `json_build_object` in the query and handing the text straight to the client keeps the API process, which is
single-threaded per worker, out of per-row work: one row comes back per request instead of a hundred that would
each be decoded, validated and encoded again. The response models still describe these answers in the OpenAPI
document, and the test suite checks every answer against them.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection, sql
from starlette.responses import Response

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


async def json_page(conn: AsyncConnection[Any], query: str, params: dict[str, Any], limit: int) -> Response:
    """Answer `{"items": [...], "next_cursor": ...}` from `query`, made by `page_query(rows)`.

    `rows` selects `i` (the row number in page order, from 1), `item` (the item as json) and `ckey` (the cursor
    key of the item, a json array), ordered by `i` and limited to `%(_fetch)s` rows (one more than the page).
    """
    cur = await conn.execute(query, {**params, "_limit": limit, "_fetch": limit + 1})
    row = await cur.fetchone()
    assert row is not None
    items, last_key, fetched = row
    cursor = encode_cursor(json.loads(last_key)) if fetched > limit and last_key is not None else None
    body = b'{"items":' + items.encode() + b',"next_cursor":' + json.dumps(cursor).encode() + b"}"
    return Response(body, media_type="application/json")
