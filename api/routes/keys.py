"""API keys: make, list and revoke them (scope `admin`; CONTRACT.md section 8).

A key limited to cities makes only keys of at most its own scope limited to some of its cities, and lists and
revokes only such keys: a key that sees a city it does not see (or every city) does not exist for it.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.access import COVERED_KEY_FILTER, AdminAccessDep, KeyCache
from api.deps import ConnDep
from api.pagination import encode_cursor
from api.params import PageDep
from api.problems import ProblemError
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime
from livinglab.sensors import Identifier
from livinglab.storage.keys import (
    INSERT_KEY,
    KEY_COLUMNS,
    MAX_KEY_CITIES,
    REVOKE_KEY,
    KeyRecord,
    Scope,
    key_record,
    new_key_values,
)

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=COMMON_RESPONSES)

KeyIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The key's id (`key_id`).")]


class KeyCreate(BaseModel):
    """A key to make."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description="read, sensors:write or admin; at most the scope of the key making it.")
    cities: list[Identifier] = Field(
        default_factory=list,
        max_length=MAX_KEY_CITIES,
        description="The cities the key may see and change; empty: every city. A key limited to cities must name "
        "some of its own.",
    )
    name: str = Field(default="", max_length=200, description="A label to recognise the key by.")


class KeyPublic(BaseModel):
    """A live key (never the key itself)."""

    key_id: int
    scope: Scope
    cities: list[str] = Field(description="The cities the key is limited to; empty: every city.")
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: UtcDatetime
    created_by: int | None = Field(description="The key that made it through this API; null for the command line.")


class KeyCreated(KeyPublic):
    """A new key, with the key itself: shown in this answer only."""

    key: str


class KeysPublic(Page[KeyPublic]):
    """A page of live keys, ordered by key_id."""


def _public(record: KeyRecord) -> KeyPublic:
    return KeyPublic(
        key_id=record.key_id,
        scope=record.scope,
        cities=list(record.cities),
        name=record.name,
        prefix=record.prefix,
        created_at=record.created_at,
        created_by=record.created_by,
    )


_LIST = (
    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND {COVERED_KEY_FILTER}"
    " AND (%(after)s::int IS NULL OR id > %(after)s) ORDER BY id LIMIT %(limit)s"
)
_LOCK = f"SELECT id FROM api_keys WHERE id = %(key_id)s AND revoked_at IS NULL AND {COVERED_KEY_FILTER} FOR UPDATE"


@router.post("", status_code=status.HTTP_201_CREATED, summary="Make an API key")
async def create_key(access: AdminAccessDep, conn: ConnDep, body: KeyCreate) -> KeyCreated:
    """Make a key and answer it, once: only its hash is stored. A key limited to cities makes only keys limited to
    some of its cities (403 otherwise)."""
    access.check_grant(body.scope, body.cities)
    key, values = new_key_values(body.scope, name=body.name, cities=body.cities, created_by=access.key_id)
    try:
        cur = await conn.execute(INSERT_KEY, values)
    except psycopg.errors.ForeignKeyViolation:
        # The key making it was revoked a moment ago (it is still in this process's cache).
        raise ProblemError(401, "the API key is not valid") from None
    row = await cur.fetchone()
    assert row is not None
    return KeyCreated(**_public(key_record(row)).model_dump(), key=key)


@router.get("", summary="List API keys")
async def list_keys(access: AdminAccessDep, conn: ConnDep, page: PageDep) -> KeysPublic:
    """Live keys, oldest first. A key limited to cities lists only keys limited to some of its cities."""
    params = {"cities": access.cities_param(), "after": page.after_int(), "limit": page.limit + 1}
    cur = await conn.execute(_LIST, params)
    rows = await cur.fetchall()
    items = [_public(key_record(r)) for r in rows[: page.limit]]
    next_cursor = encode_cursor([items[-1].key_id]) if len(rows) > page.limit else None
    return KeysPublic(items=items, next_cursor=next_cursor)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key", responses=NOT_FOUND)
async def revoke_key(access: AdminAccessDep, conn: ConnDep, request: Request, key_id: KeyIdPath) -> Response:
    """Revoke a live key: it stops working at once on this API process, and within `LIVINGLAB_KEY_CACHE_S` on
    the others."""
    async with conn.transaction():
        cur = await conn.execute(_LOCK, {"key_id": key_id, "cities": access.cities_param()})
        if await cur.fetchone() is None:
            raise access.not_found(f"no key {key_id}")
        cur = await conn.execute(REVOKE_KEY, (key_id,))
        row = await cur.fetchone()
    assert row is not None
    cache: KeyCache = request.app.state.key_cache
    cache.forget(bytes(row[0]))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
