"""Liveness and dependency status."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

import livinglab
from api.broker import check_broker
from livinglab.errors import ConfigurationError
from livinglab.settings import MqttUrl

router = APIRouter(tags=["health"])

#: How long each dependency check waits for an answer.
_CHECK_S = 2.0


class CheckPublic(BaseModel):
    status: Literal["ok", "down", "unconfigured"]
    detail: str | None = None


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, CheckPublic]


class VersionPublic(BaseModel):
    version: str = Field(description="The livinglab release serving this API.")
    api: Literal["v1"] = "v1"


async def _select_one(request: Request) -> None:
    async with request.app.state.pool.connection(timeout=_CHECK_S) as conn:
        await conn.execute("SELECT 1")


async def _check_database(request: Request) -> CheckPublic:
    # Wait for the query without cancelling it: cancelling a psycopg query makes it ask the server to cancel it over a
    # new connection, which on a silent link takes seconds more. The query itself ends within the API's deadline.
    query = asyncio.ensure_future(_select_one(request))
    done, _ = await asyncio.wait({query}, timeout=_CHECK_S)
    if not done:
        query.add_done_callback(_retrieve)
        return CheckPublic(status="down", detail=f"no answer within {_CHECK_S:.0f} s")
    exc = query.exception()
    if exc is not None:
        return CheckPublic(status="down", detail=type(exc).__name__)
    return CheckPublic(status="ok")


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # marks it retrieved: the check has answered already


async def _check_event_feed(request: Request) -> CheckPublic:
    error = request.app.state.event_feed.error
    if error is None:
        return CheckPublic(status="ok")
    return CheckPublic(status="down", detail=f"not following change events: {error}")


async def _check_broker(request: Request) -> CheckPublic:
    url = request.app.state.settings.mqtt_url
    if not url:
        return CheckPublic(status="unconfigured")
    try:
        target = MqttUrl.parse(url)
    except ConfigurationError:
        return CheckPublic(status="down", detail="malformed LIVINGLAB_MQTT_URL")
    problem = await check_broker(target, timeout_s=2.0)
    return CheckPublic(status="ok") if problem is None else CheckPublic(status="down", detail=problem)


@router.get("/v1/health", summary="Liveness and dependency status")
async def health(request: Request) -> HealthPublic:
    """`ok` when the database and the broker answer and live updates are flowing, else `degraded` (still HTTP 200:
    the API itself is alive). No key needed."""
    database, broker = await asyncio.gather(_check_database(request), _check_broker(request))
    events = await _check_event_feed(request)  # after the others: the feed's state as of the answer
    checks = {"database": database, "broker": broker, "events": events}
    status: Literal["ok", "degraded"] = "ok" if all(c.status != "down" for c in checks.values()) else "degraded"
    return HealthPublic(status=status, checks=checks)


@router.get("/v1/version", summary="The API's version")
async def version() -> VersionPublic:
    """A constant: the release and API version. No key needed (also the benchmarks' baseline route)."""
    return _VERSION


_VERSION = VersionPublic(version=livinglab.__version__)
