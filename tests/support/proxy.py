"""A TCP fault proxy for tests, on 127.0.0.1 only: put it between a client and a server and break the link at will.

Modes, switchable at any moment while connections are open (every connection follows the current mode):

- `pass`: bytes flow both ways untouched;
- `delay`: every chunk is held for `delay_s` before it is forwarded (latency, order kept);
- `blackhole`: nothing is forwarded in either direction (the proxy stops reading, so bytes wait in the kernel's
  buffers as they would behind a network partition) and new connections are accepted but not connected onwards.
  TCP itself stays up (the proxy's kernel acknowledges data and answers keepalive probes), so only an
  application-level check notices. Switching back to `pass` heals the link with no byte lost;
- `reset`: every open connection is closed with a TCP reset on both sides, and new connections are reset at once
  while the mode lasts;
- `bandwidth`: at most `bytes_per_s` per direction per connection.

One thread per connection serves both directions with `select`, polling the mode every few milliseconds. Delays
and bandwidth budgets follow `clock` (default `time.monotonic`); a test may pass a clock it advances itself, so that
what the proxy holds back depends on that clock alone, never on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import enum
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from livinglab.embedded import LOOPBACK

_CHUNK = 65536
_TICK_S = 0.02


class Mode(enum.StrEnum):
    PASS = "pass"
    DELAY = "delay"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    BANDWIDTH = "bandwidth"


@dataclass(frozen=True, slots=True)
class LinkState:
    """The proxy's current behaviour; replaced as a whole on every switch, never changed in place."""

    mode: Mode = Mode.PASS
    delay_s: float = 0.0
    bytes_per_s: float = 0.0
    #: Bumped on every switch to `reset`, so each connection resets once per switch.
    reset_epoch: int = 0


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(slots=True)
class _Direction:
    """One direction of a connection: what waits to be forwarded, and the bandwidth budget."""

    source: socket.socket
    target: socket.socket
    pending: deque[tuple[float, bytes]] = field(default_factory=deque)
    budget: float = 0.0
    budget_at: float = 0.0
    closed: bool = False
    forwarded: int = 0


class FaultProxy:
    """Listens on a free loopback port and forwards each connection to `target_port`."""

    def __init__(
        self, target_port: int, *, target_host: str = LOOPBACK, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.target = (target_host, target_port)
        self._clock = clock
        self._state = LinkState()
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        self._open: set[socket.socket] = set()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy-{self.port}")
        self._thread.start()

    # -- switching ------------------------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    def pass_through(self) -> None:
        self._switch(Mode.PASS)

    def delay(self, delay_s: float) -> None:
        self._switch(Mode.DELAY, delay_s=delay_s)

    def blackhole(self) -> None:
        self._switch(Mode.BLACKHOLE)

    def reset(self) -> None:
        """Reset every open connection now, and every new one until the next switch."""
        self._switch(Mode.RESET)

    def cap(self, bytes_per_s: float) -> None:
        self._switch(Mode.BANDWIDTH, bytes_per_s=bytes_per_s)

    def _switch(self, mode: Mode, *, delay_s: float = 0.0, bytes_per_s: float = 0.0) -> None:
        with self._lock:
            epoch = self._state.reset_epoch + (mode is Mode.RESET)
            self._state = LinkState(mode, delay_s, bytes_per_s, epoch)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open) // 2

    def url(self, scheme: str, userinfo: str = "") -> str:
        """`scheme://[userinfo@]127.0.0.1:port` for a client that should go through the proxy."""
        return f"{scheme}://{userinfo + '@' if userinfo else ''}{LOOPBACK}:{self.port}"

    def route(self, url: str) -> str:
        """`url` (a database or broker URL pointing at the proxy's target) with its host and port replaced by the
        proxy's, keeping the scheme, user, path and query."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@{LOOPBACK}:{self.port}" if user else f"{LOOPBACK}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- serving --------------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            state = self._state
            if state.mode is Mode.RESET:
                self.refused += 1
                _reset(client)
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client, state), daemon=True, name="proxy-conn").start()

    def _serve(self, client: socket.socket, first: LinkState) -> None:
        with self._lock:
            self._open.add(client)
        sockets = [client]
        try:
            while self._state.mode is Mode.BLACKHOLE and not self._closing.is_set():
                time.sleep(_TICK_S)  # a partition: the connection is not carried onwards until it heals
            if self._state.reset_epoch != first.reset_epoch or self._state.mode is Mode.RESET:
                _reset(client)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                return
            sockets.append(upstream)
            with self._lock:
                self._open.add(upstream)
            self._pump(client, upstream, first.reset_epoch)
        finally:
            with self._lock:
                self._open.difference_update(sockets)
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _pump(self, client: socket.socket, upstream: socket.socket, epoch: int) -> None:
        now = self._clock()
        directions = [_Direction(client, upstream, budget_at=now), _Direction(upstream, client, budget_at=now)]
        for sock in (client, upstream):
            sock.setblocking(False)
        while not self._closing.is_set():
            state = self._state
            if state.reset_epoch != epoch:
                _reset(client)
                _reset(upstream)
                return
            if all(d.closed and not d.pending for d in directions):
                return
            readable = [d.source for d in directions if not d.closed and self._may_read(d, state)]
            if readable:
                try:
                    ready = select.select(readable, [], [], _TICK_S)[0]
                except (OSError, ValueError):
                    return  # `close` closed the sockets under this thread: the proxy is going away
            else:
                ready = []
                time.sleep(_TICK_S)
            now = self._clock()
            for d in directions:
                if d.source in ready:
                    self._read(d, self._state, now)  # the mode now, not when select began: a switch applies at once
                if state.mode is not Mode.BLACKHOLE and not self._flush(d, now):
                    return

    def _may_read(self, d: _Direction, state: LinkState) -> bool:
        if state.mode is Mode.BLACKHOLE:
            return False
        if state.mode is Mode.BANDWIDTH:
            return d.budget + (self._clock() - d.budget_at) * state.bytes_per_s >= 1
        return len(d.pending) < 256  # back-pressure while delayed chunks pile up

    def _read(self, d: _Direction, state: LinkState, now: float) -> None:
        size = _CHUNK
        if state.mode is Mode.BANDWIDTH:
            d.budget = min(state.bytes_per_s, d.budget + (now - d.budget_at) * state.bytes_per_s)
            d.budget_at = now
            size = max(1, min(_CHUNK, int(d.budget)))
        try:
            data = d.source.recv(size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            d.closed = True
            d.pending.append((now, b""))  # forward the end of stream in order
            return
        if state.mode is Mode.BANDWIDTH:
            d.budget -= len(data)
        release = now + state.delay_s if state.mode is Mode.DELAY else now
        d.pending.append((release, data))

    def _flush(self, d: _Direction, now: float) -> bool:
        """Forward what is due; False when the connection is finished."""
        while d.pending and d.pending[0][0] <= now:
            _, data = d.pending[0]
            if not data:
                d.pending.popleft()
                with contextlib.suppress(OSError):
                    d.target.shutdown(socket.SHUT_WR)
                continue
            try:
                sent = d.target.send(data)
            except BlockingIOError:
                return True
            except OSError:
                return False
            d.forwarded += sent
            if sent < len(data):
                d.pending[0] = (d.pending[0][0], data[sent:])
                return True
            d.pending.popleft()
        return True
