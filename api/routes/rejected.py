"""Rejected messages: inspect them, and ask for a replay once the cause is fixed.

Replay goes through the database, not through this process: the API marks the message (`replay_requested_at`)
and NOTIFYs `livinglab_replay`; an ingester runs the stored payload through the same decoding and validation as a
live message, with the registry and limits in force now, and records `replayed_at` and `replay_outcome`
(`accepted` or the new rejection reason). Poll `GET /v1/rejected/{id}` for the outcome.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from api.access import ReadAccessDep, WriteAccessDep, city_filter, visible_row
from api.deps import ConnDep
from api.pagination import encode_cursor
from api.params import PageDep, TimeRangeDep
from api.problems import ProblemError
from api.routes.common import CityQuery
from api.schemas import COMMON_RESPONSES, NOT_FOUND, Page, UtcDatetime, problem_doc
from livinglab.domain import Kind, RejectionReason
from livinglab.storage._db import CHANNEL_REPLAY

router = APIRouter(prefix="/v1/rejected", tags=["rejected messages"], responses=COMMON_RESPONSES)

ReplayStatus = Literal["none", "pending", "accepted", "rejected"]
RejectedIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The rejected message's id.")]

_COLUMNS = (
    "id, received_at, topic, city, kind, sensor_id, reason, detail, payload, payload_size,"
    " replay_requested_at, replayed_at, replay_outcome, payload_dropped"
)


class RejectedPublic(BaseModel):
    """A rejected message as the ingester kept it."""

    id: int
    received_at: UtcDatetime
    topic: str
    city: str | None
    kind: str | None
    sensor_id: str | None
    reason: str = Field(description="The rejection reason code (CONTRACT.md section 1).")
    detail: str
    payload_base64: str = Field(description="The payload's bytes (up to the ingester's size cap), base64.")
    payload_size: int = Field(description="The payload's full size in bytes.")
    payload_truncated: bool = Field(description="Whether only the first bytes of the payload were kept.")
    payload_dropped: bool = Field(
        default=False,
        description="Whether the payload was left out because its sensor's quota of rejected payload bytes was used"
        " up (LIVINGLAB_REJECTED_QUOTA_BYTES); the message cannot be replayed then.",
    )
    replay_status: ReplayStatus = Field(
        description="none, pending (requested, not yet carried out), accepted, or rejected (again: see replay_outcome)."
    )
    replay_requested_at: UtcDatetime | None
    replayed_at: UtcDatetime | None
    replay_outcome: str | None = Field(
        description="`accepted` or the reason code of the replay's rejection (`payload_truncated` when only part of"
        " the payload was kept, which the API does not let happen)."
    )


class RejectedListPublic(Page[RejectedPublic]):
    """A page of rejected messages, newest first."""


def replay_status(row: dict[str, Any]) -> ReplayStatus:
    requested: datetime | None = row["replay_requested_at"]
    replayed: datetime | None = row["replayed_at"]
    if requested is not None and (replayed is None or replayed < requested):
        return "pending"
    if replayed is None:
        return "none"
    return "accepted" if row["replay_outcome"] == "accepted" else "rejected"


def _public(row: dict[str, Any]) -> RejectedPublic:
    payload = bytes(row["payload"])
    return RejectedPublic(
        id=row["id"],
        received_at=row["received_at"],
        topic=row["topic"],
        city=row["city"],
        kind=row["kind"],
        sensor_id=row["sensor_id"],
        reason=row["reason"],
        detail=row["detail"],
        payload_base64=base64.b64encode(payload).decode("ascii"),
        payload_size=row["payload_size"],
        payload_truncated=len(payload) < row["payload_size"],
        payload_dropped=row["payload_dropped"],
        replay_status=replay_status(row),
        replay_requested_at=row["replay_requested_at"],
        replayed_at=row["replayed_at"],
        replay_outcome=row["replay_outcome"],
    )


@router.get("", summary="List rejected messages")
async def list_rejected(
    access: ReadAccessDep,
    conn: ConnDep,
    span: TimeRangeDep,
    page: PageDep,
    sensor_id: Annotated[str | None, Query(max_length=64, description="Only messages of this sensor.")] = None,
    reason: Annotated[RejectionReason | None, Query(description="Only messages rejected for this reason.")] = None,
    city: CityQuery = None,
    kind: Annotated[Kind | None, Query(description="Only messages on air or traffic topics.")] = None,
    replay: Annotated[ReplayStatus | None, Query(description="Only messages in this replay status.")] = None,
) -> RejectedListPublic:
    """Rejected messages received in `[start, end)` (default: the last 24 hours), newest first.

    A message belongs to the city its topic names; one whose topic names no city is listed to keys without cities
    only."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM rejected"
            " WHERE received_at >= %(start)s AND received_at < %(end)s"
            " AND (%(sensor_id)s::text IS NULL OR sensor_id = %(sensor_id)s)"
            " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
            f" AND {city_filter('city')}"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
            " AND (%(after)s::bigint IS NULL OR id < %(after)s)"
            " AND (%(replay)s::text IS NULL OR CASE"
            "  WHEN replay_requested_at IS NOT NULL AND (replayed_at IS NULL OR replayed_at < replay_requested_at)"
            "   THEN 'pending'"
            "  WHEN replayed_at IS NULL THEN 'none'"
            "  WHEN replay_outcome = 'accepted' THEN 'accepted' ELSE 'rejected' END = %(replay)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {
                "start": span.start,
                "end": span.end,
                "sensor_id": sensor_id,
                "reason": reason.value if reason else None,
                "cities": access.cities_param(city),
                "kind": kind.value if kind else None,
                "after": page.after_int(),
                "replay": replay,
                "limit": page.limit + 1,
            },
        )
        rows = await cur.fetchall()
    items = [_public(r) for r in rows[: page.limit]]
    next_cursor = encode_cursor([items[-1].id]) if len(rows) > page.limit else None
    return RejectedListPublic(items=items, next_cursor=next_cursor)


@router.get("/{rejected_id}", summary="One rejected message", responses=NOT_FOUND)
async def get_rejected(access: ReadAccessDep, conn: ConnDep, rejected_id: RejectedIdPath) -> RejectedPublic:
    query = f"SELECT {_COLUMNS} FROM rejected WHERE id = %s"
    return _public(await visible_row(conn, access, query, (rejected_id,), f"no rejected message {rejected_id}"))


@router.post(
    "/{rejected_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Replay a rejected message",
    responses={**NOT_FOUND, 409: problem_doc("The message was already replayed and accepted.")},
)
async def replay_rejected(access: WriteAccessDep, conn: ConnDep, rejected_id: RejectedIdPath) -> RejectedPublic:
    """Ask an ingester to run the stored payload again through the current registry and limits (for example
    after registering its sensor). Answers 202 with `replay_status` `pending`; the outcome appears on
    `GET /v1/rejected/{id}`. A message whose payload was truncated when stored cannot be replayed (409).
    Needs scope `sensors:write`.
    """
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        query = f"SELECT {_COLUMNS} FROM rejected WHERE id = %s FOR UPDATE"
        row = await visible_row(conn, access, query, (rejected_id,), f"no rejected message {rejected_id}")
        if row["replay_outcome"] == "accepted" and replay_status(row) == "accepted":
            raise ProblemError(409, f"rejected message {rejected_id} was already replayed and accepted")
        if len(bytes(row["payload"])) < row["payload_size"]:
            raise ProblemError(409, f"only part of message {rejected_id}'s payload was kept; it cannot be replayed")
        await cur.execute(
            f"UPDATE rejected SET replay_requested_at = clock_timestamp() WHERE id = %s RETURNING {_COLUMNS}",
            (rejected_id,),
        )
        replayed = await cur.fetchone()
        await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL_REPLAY, str(rejected_id)))
    assert replayed is not None
    return _public(replayed)
