"""Live updates as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection

from api.access import ReadAccessDep
from api.deps import SettingsDep, connection
from api.problems import ProblemError
from api.schemas import COMMON_RESPONSES
from api.stream import FeedDownError, StreamOptions, event_stream, start_position
from livinglab.events import EventType

router = APIRouter(prefix="/v1", tags=["live updates"], responses=COMMON_RESPONSES)


@router.get(
    "/stream",
    summary="Live updates (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An endless event stream."}},
)
async def stream(
    access: ReadAccessDep,
    request: Request,
    settings: SettingsDep,
    types: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Comma-separated event types to receive (aggregates, ispu, aqi, traffic, service_levels,"
            " alarm). Default: all.",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this event id (sent by EventSource).")
    ] = None,
) -> StreamingResponse:
    """New aggregates, index changes and alarm changes as they are stored, one SSE message per event: `id` is the
    event id, `event` its type and `data` its JSON payload (see `livinglab.events`). Event ids increase in the order the
    events were committed. Comments are sent as heartbeats every `LIVINGLAB_SSE_HEARTBEAT_S` seconds. A client
    reconnecting with `Last-Event-ID` first gets the events it missed, each once and in order (or one `resync` event
    when it missed too many, after which it should refetch from the HTTP API). When the database becomes
    unreachable the stream ends with a comment saying so; reconnecting is answered 503 until it is back.
    """
    wanted = None
    if types:
        wanted = {t.strip() for t in types.split(",") if t.strip()}
        unknown = wanted - {t.value for t in EventType}
        if unknown:
            raise ProblemError(400, f"unknown event types: {', '.join(sorted(unknown))}")
    resume: int | None = None
    if last_event_id is not None and last_event_id.strip():
        try:
            resume = int(last_event_id)
        except ValueError:
            raise ProblemError(400, "Last-Event-ID must be an event id (an integer)") from None
        if resume < 0:
            raise ProblemError(400, "Last-Event-ID must not be negative")
    # A key limited to cities gets its cities' events only; events of no city go to keys of every city.
    options = StreamOptions(settings.sse_heartbeat_s, settings.sse_max_backlog, wanted, access.cities_param())
    state = request.app.state
    feed = state.event_feed

    def source() -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return connection(state.pool, settings.pool_timeout_s, state.idle_check)

    try:
        start, resync = await start_position(feed, source, resume, options.max_backlog)
    except FeedDownError:
        raise ProblemError(503, "live updates are unavailable: the event feed cannot reach the database") from None
    metrics = state.metrics

    async def body() -> AsyncIterator[str]:
        metrics.sse_clients.inc()
        try:
            async for chunk in event_stream(feed, source, start, resync, options):
                yield chunk
        finally:
            metrics.sse_clients.dec()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
