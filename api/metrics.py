"""Prometheus metrics of the API: request counts and latencies per route template, and the pauses of the process's
garbage collector (while it runs, no request moves; see `api.server.freeze_startup_objects`).

Each app has its own registry, so several apps in one process (tests) do not collide. The route label is the
path template (`/v1/sensors/{sensor_id}`), never the raw path, so the label set stays small. The collector's pauses
are the process's: every app running in it sees all of them.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_GC_PAUSE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class ApiMetrics:
    """The API's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "livinglab_api_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "livinglab_api_request_duration_seconds",
            "Time from request to the start of the response, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "livinglab_api_requests_in_progress", "Requests being handled.", registry=self.registry
        )
        self.sse_clients = Gauge(
            "livinglab_api_sse_clients", "Connected Server-Sent Events clients.", registry=self.registry
        )
        gc_pause = Histogram(
            "livinglab_api_gc_pause_seconds",
            "Passes of the API process's cyclic garbage collector, by generation: while one runs, no request moves.",
            ["generation"],
            buckets=_GC_PAUSE_BUCKETS_S,
            registry=self.registry,
        )
        self._gc_pause = [gc_pause.labels(str(generation)) for generation in range(3)]
        frozen = Gauge(
            "livinglab_api_gc_frozen_objects",
            "Objects left out of the garbage collector's passes (`LIVINGLAB_GC_FREEZE`).",
            registry=self.registry,
        )
        frozen.set_function(gc.get_freeze_count)
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pause[info["generation"]].observe(time.perf_counter() - self._gc_started)

    def watch_gc(self) -> None:
        """Time the process's garbage collector passes from now on (until `unwatch_gc`)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Count requests and time them until the response starts (a stream's duration is not its latency)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        timed = False

        def observe() -> None:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - started)

        async def timing_send(message: Message) -> None:
            nonlocal status, timed
            if message["type"] == "http.response.start":
                status = message["status"]
                observe()
                timed = True
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, timing_send)
        finally:
            self.metrics.in_progress.dec()
            if not timed:
                observe()
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
