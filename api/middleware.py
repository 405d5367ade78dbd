"""ASGI middleware: request limits, strict JSON bodies and per-client rate limiting.

Each answers with problem details before the request reaches routing or authentication, so an oversized, slow,
malformed or flooding client costs no database work. (Limits on the request head itself, before any ASGI code
runs, are in `api.server`.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response
from livinglab.storage.keys import hash_key

#: Paths that are never rate limited (probes and scrapers).
UNLIMITED_PATHS = frozenset({"/v1/health", "/metrics"})

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _BodyRefusedError(Exception):
    """The body broke a limit; the middleware answers instead of the application."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RequestLimits:
    """Answer 431 for too many headers, 413 for a body larger than `max_bytes` (declared or streamed), and 408 for
    a body that has not arrived `body_timeout_s` after the request started (a slowly trickling client)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_headers: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_headers = max_headers
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope["headers"]) > self.max_headers:
            await self._reject(scope, receive, send, 431, f"a request may carry at most {self.max_headers} headers")
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send, 413, self._too_large)
                    return
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        received = 0
        body_done = False
        refused: _BodyRefusedError | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done:  # later calls wait for a disconnect (event streams), for as long as it takes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = _BodyRefusedError(408, f"the request body did not arrive within {self.body_timeout_s:g} s")
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = _BodyRefusedError(413, self._too_large)
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # The framework may turn our exception into an answer of its own: replace that answer with ours.
            if refused is not None and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyRefusedError:
            if started:
                raise
        if refused is not None and not started:
            await self._reject(scope, receive, send, refused.status, refused.detail)

    @property
    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        response = problem_response(status, detail, instance=scope.get("path"))
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class _DuplicateMemberError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = set()
    for name, _ in pairs:
        if name in names:
            raise _DuplicateMemberError(name)
        names.add(name)
    return dict(pairs)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class StrictJsonBody:
    """Answer 400 when a JSON body repeats a member name within one object (RFC 8259 section 4 leaves the meaning
    open; the ingester refuses such payloads as `duplicate_key`, and so does the API, instead of silently keeping
    the last one). Names are compared after unescaping, so `"pm\\u0032\\u0035"` repeats `"pm25"`.

    The body is read whole here (after `RequestLimits` bounded it) and handed on unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            json.loads(body, object_pairs_hook=_unique_members)
        except _DuplicateMemberError as exc:
            name = exc.name if len(exc.name) <= 80 else exc.name[:80] + "..."
            response = problem_response(
                400, f"the JSON body repeats the member name {name!r} in one object", instance=scope.get("path")
            )
            await response(scope, receive, send)
            return
        except ValueError:
            pass  # not JSON at all: the framework answers that with its own problem
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: Iterable[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer` header, read as the authentication dependency reads it (scheme in
    any case, surrounding spaces dropped), or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def client_address(scope: Scope, trusted: tuple[IpNetwork, ...]) -> str:
    """The peer's address; when the peer is a trusted proxy, the nearest address in `X-Forwarded-For` that is not
    one (proxies append the address they received from, so the entries left of it are the client's own claims)."""
    client = scope.get("client")
    peer = client[0] if client else "-"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def _is_trusted(address: str, trusted: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class RateLimit:
    """A token bucket per API key, and per client address for requests without a key.

    Each client may send `burst` requests at once and `rate_per_s` sustained; beyond that it gets 429 with
    Retry-After. A key's bucket is keyed on the key's identity (the SHA-256 of the token as authentication reads
    it, which is what the key table stores), so the same key written differently shares one bucket.

    Failed authentication is charged apart: a token is *verified* once a request with it was not answered 401, and
    only then does it get a bucket of its own. Until then it is judged by its address's failure bucket, which every
    401 drains: an address sending made-up tokens is refused (429) before its requests reach authentication and the
    database, while valid keys used from the same address (clients behind one proxy share it) keep their own
    budget. Addresses are the peer's, or from `X-Forwarded-For` only when the peer is a configured trusted proxy.
    Both tables are bounded.
    """

    MAX_BUCKETS = 10_000
    MAX_VERIFIED = 10_000

    def __init__(
        self, app: ASGIApp, *, rate_per_s: float, burst: int, trusted_proxies: tuple[IpNetwork, ...] = ()
    ) -> None:
        self.app = app
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.trusted_proxies = trusted_proxies
        self._buckets: dict[str, _Bucket] = {}
        self._verified: OrderedDict[str, None] = OrderedDict()

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

    def _wait(self, client: str, now: float) -> float:
        """The seconds until `client`'s bucket holds a token (0 when it does), without taking one."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        tokens = bucket.tokens + (now - bucket.updated) * self.rate_per_s
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def _evict(self, now: float) -> None:
        # Buckets that have refilled completely carry no state worth keeping.
        full_after_s = self.burst / self.rate_per_s
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after_s]
        for k in stale:
            del self._buckets[k]
        while len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets.pop(next(iter(self._buckets)))

    def _verify(self, identity: str) -> None:
        self._verified[identity] = None
        self._verified.move_to_end(identity)
        while len(self._verified) > self.MAX_VERIFIED:
            self._verified.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate_per_s <= 0 or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trusted_proxies)
        failures = "fail:" + address
        token = bearer_token(scope)
        identity = "key:" + hash_key(token).hex() if token is not None else None
        now = time.monotonic()
        if identity is None:
            wait_s = self._take("addr:" + address, now)
        elif identity in self._verified:
            wait_s = self._take(identity, now)
        else:
            wait_s = self._wait(failures, now)
        if wait_s > 0:
            response = problem_response(
                429,
                "too many requests; slow down",
                instance=scope.get("path"),
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
            await response(scope, receive, send)
            return

        async def account(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    self._take(failures, time.monotonic())
                    if identity is not None:
                        self._verified.pop(identity, None)  # a key revoked meanwhile
                elif identity is not None and identity not in self._verified:
                    self._verify(identity)
                    self._take(identity, time.monotonic())  # its first request counts against its own bucket
            await send(message)

        await self.app(scope, receive, account)
