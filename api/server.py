"""Serving the API with uvicorn: limits on what a connection may cost before a request reaches the application.

uvicorn (with httptools, its fastest parser) bounds neither the size of a request's head nor the time a client may
take to send it: one connection could send a 50 MiB header, and a half-open or slowly trickling connection stayed
open for ever. `GuardedHttpToolsProtocol` adds both limits to uvicorn's httptools protocol:

- the request line and headers may take at most `max_head_bytes`; beyond, the client gets 431 and the connection
  is closed (the bytes are counted as they arrive, so nothing larger is ever buffered);
- they must arrive within `head_timeout_s` of the connection's start or of the previous response's end; a
  connection that has sent part of a head by then gets 408, one that sent nothing is closed. A request whose head
  arrived is no longer timed here: its body has its own deadline (`api.middleware.RequestLimits`) and a response
  (an event stream) may last as long as the client reads it.

`server_config` builds the uvicorn configuration every way of serving the API uses: these limits, the keep-alive
timeout, no `Server` header, and uvicorn's own proxy-header handling off, since it would trust `X-Forwarded-For`
from 127.0.0.1 by default (`api.middleware.RateLimit` trusts only `LIVINGLAB_TRUSTED_PROXIES`).
"""

from __future__ import annotations

import asyncio
import gc
import json
from http import HTTPStatus
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import PROBLEM_JSON
from api.settings import ApiSettings

#: Seconds an idle keep-alive connection stays open after a response.
KEEP_ALIVE_S = 5


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head and a deadline for it (see the module docstring)."""

    max_head_bytes: ClassVar[int] = 16 * 1024
    head_timeout_s: ClassVar[float] = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._awaiting_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            room = max(0, self.max_head_bytes - self._head_bytes)
            if len(data) > room:
                # Feed only what the limit allows: if the head ends inside it, go on with the rest as usual.
                head, rest = data[:room], data[room:]
                self._head_bytes += len(head)
                if head:
                    super().data_received(head)
                if self.transport.is_closing():
                    return
                if self._awaiting_head:
                    self._refuse(431, f"the request line and headers exceed {self.max_head_bytes} bytes")
                    return
                self.data_received(rest)
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes on this connection are the head of the next request.
        self._awaiting_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._awaiting_head:
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._head_bytes:
            self._refuse(408, f"the request line and headers did not arrive within {self.head_timeout_s:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        """Answer with a problem document and close; only between responses, never inside one."""
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps(
                {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
            ).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_JSON}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def guarded_protocol(settings: ApiSettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with the limits of `settings`."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_head_bytes": settings.max_header_bytes, "head_timeout_s": settings.request_head_timeout_s},
    )


def server_config(app: Any, settings: ApiSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the API (host and port from `settings` unless overridden)."""
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "http": guarded_protocol(settings),
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "log_config": None,
        "access_log": False,
        # Event streams never end by themselves: give them a bounded grace period at shutdown.
        "timeout_graceful_shutdown": 5,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def freeze_startup_objects() -> None:
    """Exclude what the process holds before it serves (modules, classes, the application) from the cyclic garbage
    collector's full passes, as `gc.freeze` does.

    Those passes stop the event loop while they walk every tracked object: with about 120,000 of them after startup,
    each took 37-51 ms here and came every 3-10 s under load, and the requests that arrived meanwhile waited that long
    (enough to set a run's p99). Frozen, the same pass walks only what was made since, and took 1-6 ms. Objects made
    at startup that become cyclic garbage later are not reclaimed; startup makes few of those. Called once, by the
    process that serves, just before it starts.
    """
    gc.collect()
    gc.freeze()
