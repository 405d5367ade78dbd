"""ASGI middleware: request body size limit and per-client rate limiting.

Both answer with problem details before the request reaches routing or authentication, so an oversized or
flooding client costs no database work.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

#: Paths that are never rate limited (probes and scrapers).
UNLIMITED_PATHS = frozenset({"/v1/health", "/metrics"})


class BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    """Answer 413 when a request body is larger than `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # The framework may turn our exception into a 400 of its own: replace that answer with the 413.
            if too_large and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if started:
                raise
        if too_large and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, f"the request body is larger than {self.max_bytes} bytes", instance=scope.get("path")
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimit:
    """A token bucket per API key (or per client address for requests without a key).

    Each client may send `burst` requests at once and `rate_per_s` sustained; beyond that it gets 429 with
    Retry-After. The key is identified by a hash of its token, unverified, so a made-up token would get a fresh
    bucket: every answer 401 or 403 is therefore also charged to the client address, and an address whose
    failures exceed the same rate gets 429 before its request reaches authentication (and the database). The
    bucket table is bounded.
    """

    MAX_BUCKETS = 10_000

    def __init__(self, app: ASGIApp, *, rate_per_s: float, burst: int) -> None:
        self.app = app
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def _client(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return "key:" + hashlib.sha256(value).hexdigest()[:24]
        return self._address(scope)

    @staticmethod
    def _address(scope: Scope) -> str:
        client = scope.get("client")
        return f"addr:{client[0] if client else '-'}"

    def _take(self, client: str, now: float) -> float:
        """Take a token; 0 when allowed, else the seconds until one is available."""
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._evict(now)
            bucket = self._buckets[client] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def _exhausted(self, client: str, now: float) -> bool:
        """Whether `client`'s bucket holds less than one token now (without taking one)."""
        bucket = self._buckets.get(client)
        return bucket is not None and bucket.tokens + (now - bucket.updated) * self.rate_per_s < 1.0

    def _evict(self, now: float) -> None:
        # Buckets that have refilled completely carry no state worth keeping.
        full_after_s = self.burst / self.rate_per_s
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after_s]
        for k in stale:
            del self._buckets[k]
        while len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets.pop(next(iter(self._buckets)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate_per_s <= 0 or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        address = self._address(scope)
        now = time.monotonic()
        failures = "fail:" + address
        wait_s = self._take(client, now)
        if wait_s <= 0 and client != address and self._exhausted(failures, now):
            wait_s = 1.0 / self.rate_per_s
        if wait_s > 0:
            response = problem_response(
                429,
                "too many requests; slow down",
                instance=scope.get("path"),
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
            await response(scope, receive, send)
            return

        async def charge_failures(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                self._take(failures, time.monotonic())
            await send(message)

        await self.app(scope, receive, charge_failures)
