"""Notification channels and their delivery logs (scope `admin`; CONTRACT.md section 5).

A channel may be limited to cities, like a key: it then carries only those cities' alarms, and a key limited to
cities sees (and deletes) only channels limited to some of its cities. A channel of every city exists only for
keys of every city. A webhook's secret is never served back, only its last characters (`secret_hint`); a secret
the server made is answered once, in the creation's answer.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, Path, Query, Response, status
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.access import COVERED_KEY_FILTER, Access, AdminAccessDep
from api.deps import ConnDep, SettingsDep
from api.pagination import encode_cursor
from api.params import PageDep
from api.problems import ProblemError
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime, problem_doc
from livinglab.notifications import (
    CHANNEL_ID_PATTERN,
    AlarmEvent,
    ChannelSpec,
    ChannelType,
    DeliveryStatus,
    secret_hint,
    url_for_display,
)
from livinglab.storage.keys import normalize_cities

router = APIRouter(prefix="/v1/notification-channels", tags=["notifications"], responses=COMMON_RESPONSES)

ChannelIdPath = Annotated[
    str, Path(pattern=rf"^{CHANNEL_ID_PATTERN}$", max_length=64, description="The channel's id (`channel_id`).")
]


class ChannelCreate(ChannelSpec):
    """A channel to create: `type` and the fields of that type (webhook: `url` and `secret`; mqtt: `topic`;
    email: `to`). A field of another type is refused."""


class ChannelPublic(BaseModel):
    """A notification channel (a webhook's secret is never served: only its last characters)."""

    channel_id: str
    type: ChannelType
    name: str
    cities: list[str] = Field(description="The cities whose alarms it carries; empty: every city.")
    url: str | None = Field(default=None, description="webhook: where it POSTs (a password in it is masked).")
    secret_hint: str | None = Field(default=None, description="webhook: the secret's last four characters.")
    topic: str | None = Field(default=None, description="mqtt: the topic template.")
    to: list[str] | None = Field(default=None, description="email: the recipients.")
    created_at: UtcDatetime


class ChannelCreated(ChannelPublic):
    """A new channel. `secret` holds the webhook secret the server made (null when the request gave one): shown in
    this answer only."""

    secret: str | None = None


class ChannelsPublic(Page[ChannelPublic]):
    """A page of channels, ordered by channel_id."""


class DeliveryPublic(BaseModel):
    """One notification of one alarm event through one channel, with every attempt's outcome."""

    delivery_id: UUID = Field(description="The same on every attempt (`X-Livinglab-Delivery`, `delivery_id`).")
    channel_id: str
    event: AlarmEvent
    alarm_id: int
    attempts: int = Field(description="Attempts made so far.")
    status: DeliveryStatus
    last_error: str | None = Field(description="What went wrong on the last failed attempt; null once delivered.")
    created_at: UtcDatetime
    next_attempt_at: UtcDatetime | None = Field(description="When it is tried next (pending deliveries).")
    delivered_at: UtcDatetime | None


class DeliveriesPublic(Page[DeliveryPublic]):
    """A page of a channel's deliveries, newest first."""


_COLUMNS = "channel_id, type, name, cities, config, created_at"


def _public(row: dict[str, Any]) -> ChannelPublic:
    config: dict[str, Any] = row["config"] or {}
    url, secret = config.get("url"), config.get("secret")
    return ChannelPublic(
        channel_id=row["channel_id"],
        type=row["type"],
        name=row["name"],
        cities=list(row["cities"]),
        url=url_for_display(url) if isinstance(url, str) else None,
        secret_hint=secret_hint(secret) if isinstance(secret, str) else None,
        topic=config.get("topic"),
        to=config.get("to"),
        created_at=row["created_at"],
    )


_LIST = (
    f"SELECT {_COLUMNS} FROM notification_channels WHERE {COVERED_KEY_FILTER}"
    " AND (%(type)s::text IS NULL OR type = %(type)s)"
    " AND (%(after)s::text IS NULL OR channel_id > %(after)s) ORDER BY channel_id LIMIT %(limit)s"
)
_GET = f"SELECT {_COLUMNS} FROM notification_channels WHERE channel_id = %(channel_id)s AND {COVERED_KEY_FILTER}"
_INSERT = (
    "INSERT INTO notification_channels (channel_id, type, name, cities, config)"
    " VALUES (%(channel_id)s, %(type)s, %(name)s, %(cities)s, %(config)s)"
    f" ON CONFLICT (channel_id) DO NOTHING RETURNING {_COLUMNS}"
)
_DELETE = f"DELETE FROM notification_channels WHERE channel_id = %(channel_id)s AND {COVERED_KEY_FILTER} RETURNING 1"
_DELIVERIES = (
    "SELECT delivery_id, channel_id, event, alarm_id, attempts, status, last_error, created_at,"
    " CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, delivered_at"
    " FROM notification_deliveries WHERE channel_id = %(channel_id)s"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " AND (%(after_at)s::timestamptz IS NULL OR (created_at, delivery_id) < (%(after_at)s, %(after_id)s::uuid))"
    " ORDER BY created_at DESC, delivery_id DESC LIMIT %(limit)s"
)


@router.get("", summary="List notification channels")
async def list_channels(
    access: AdminAccessDep,
    conn: ConnDep,
    page: PageDep,
    type: Annotated[ChannelType | None, Query(description="Only channels of this type.")] = None,
) -> ChannelsPublic:
    """Channels by id. A key limited to cities lists only channels limited to some of its cities."""
    params = {
        "cities": access.cities_param(),
        "type": type.value if type else None,
        "after": page.after_text(),
        "limit": page.limit + 1,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LIST, params)
        rows = await cur.fetchall()
    items = [_public(r) for r in rows[: page.limit]]
    next_cursor = encode_cursor([items[-1].channel_id]) if len(rows) > page.limit else None
    return ChannelsPublic(items=items, next_cursor=next_cursor)


def _check_cities(access: Access, cities: list[str]) -> list[str]:
    try:
        normalized = list(normalize_cities(cities))
    except ValueError as exc:
        raise ProblemError(422, str(exc)) from None
    if not access.covers(normalized):
        wanted = ", ".join(normalized) or "every city"
        raise ProblemError(403, f"this API key is limited to cities; it cannot make a channel of {wanted}")
    return normalized


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a notification channel",
    responses={409: problem_doc("A channel with this id exists.")},
)
async def create_channel(
    access: AdminAccessDep, conn: ConnDep, settings: SettingsDep, body: ChannelCreate
) -> ChannelCreated:
    """Create a webhook, MQTT or email channel; rules name it in their `channels`. A key limited to cities makes
    only channels limited to some of its cities (403 otherwise)."""
    cities = _check_cities(access, body.cities)
    channel_id = body.channel_id or f"ch-{secrets.token_hex(6)}"
    config = body.config(topic_prefix=settings.topic_prefix)
    values = {
        "channel_id": channel_id,
        "type": body.type.value,
        "name": body.name or channel_id,
        "cities": cities,
        "config": Jsonb(config),
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_INSERT, values)
        row = await cur.fetchone()
    if row is None:
        raise ProblemError(409, f"a channel {channel_id!r} exists")
    made_secret = config.get("secret") if body.type is ChannelType.WEBHOOK and body.secret is None else None
    return ChannelCreated(**_public(row).model_dump(), secret=made_secret)


@router.get("/{channel_id}", summary="Read a notification channel", responses=NOT_FOUND)
async def get_channel(access: AdminAccessDep, conn: ConnDep, channel_id: ChannelIdPath) -> ChannelPublic:
    """One channel (404 for a channel of a city this key does not see)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GET, {"channel_id": channel_id, "cities": access.cities_param()})
        row = await cur.fetchone()
    if row is None:
        raise access.not_found(f"no channel {channel_id!r}")
    return _public(row)


@router.delete(
    "/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a notification channel",
    responses=NOT_FOUND,
)
async def delete_channel(access: AdminAccessDep, conn: ConnDep, channel_id: ChannelIdPath) -> Response:
    """Delete a channel with its delivery log; its pending deliveries are dropped. Rules that name it keep the
    name and deliver nothing through it."""
    cur = await conn.execute(_DELETE, {"channel_id": channel_id, "cities": access.cities_param()})
    if await cur.fetchone() is None:
        raise access.not_found(f"no channel {channel_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _delivery_cursor(after: list[object] | None) -> tuple[datetime | None, UUID | None]:
    if after is None:
        return None, None
    try:
        return datetime.fromisoformat(str(after[0])), UUID(str(after[1]))
    except ValueError:
        raise ProblemError(400, "the cursor is not valid") from None


@router.get("/{channel_id}/deliveries", summary="List a channel's deliveries", responses=NOT_FOUND)
async def list_deliveries(
    access: AdminAccessDep,
    conn: ConnDep,
    page: PageDep,
    channel_id: ChannelIdPath,
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(description="Only deliveries in this status.")
    ] = None,
) -> DeliveriesPublic:
    """The delivery log of a channel, newest first: one row per alarm event, with its attempts and last error."""
    after_at, after_id = _delivery_cursor(page.after(2))
    if after_at is not None and after_at.tzinfo is None:
        raise ProblemError(400, "the cursor is not valid")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GET, {"channel_id": channel_id, "cities": access.cities_param()})
        if await cur.fetchone() is None:
            raise access.not_found(f"no channel {channel_id!r}")
        params = {
            "channel_id": channel_id,
            "status": status,
            "after_at": after_at,
            "after_id": after_id,
            "limit": page.limit + 1,
        }
        try:
            await cur.execute(_DELIVERIES, params)
        except psycopg.errors.DatetimeFieldOverflow:
            raise ProblemError(400, "the cursor is not valid") from None
        rows = await cur.fetchall()
    items = [DeliveryPublic(**r) for r in rows[: page.limit]]
    next_cursor = None
    if len(rows) > page.limit:
        last = items[-1]
        next_cursor = encode_cursor([rows[page.limit - 1]["created_at"].isoformat(), str(last.delivery_id)])
    return DeliveriesPublic(items=items, next_cursor=next_cursor)
