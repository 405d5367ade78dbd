"""The fault proxy itself, against an echo server: each mode does what the scenarios rely on.

Delay and bandwidth run on a clock the test advances itself: what the proxy lets through is then a matter of that
clock alone, so the tests assert on it and never on how long the machine took.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from livinglab.embedded import LOOPBACK
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.faults


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server((LOOPBACK, 0))
    port = server.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    server.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy(echo_port) as p:
        yield p


def _connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


#: How far the test moves the proxy's clock at a time (a power of two, so the sums are exact).
_STEP_S = 1 / 8


def _echo_on_clock(sock: socket.socket, data: bytes, clock: ManualClock) -> float:
    """Send `data`, then move the clock a step at a time until all of it has come back; returns the clock then."""
    sock.sendall(data)
    sock.settimeout(0.1)  # how long the proxy gets to act on a step (more only moves the clock on further)
    got = b""
    while clock.now < 10:
        with contextlib.suppress(TimeoutError):
            while len(got) < len(data):
                got += sock.recv(65536)
        if got == data:
            return clock.now
        clock.now += _STEP_S
    raise AssertionError(f"{len(got)} of {len(data)} bytes came back by proxy clock {clock.now} s")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_proxy(echo_port: int, clock: ManualClock) -> Iterator[FaultProxy]:
    with FaultProxy(echo_port, clock=clock) as p:
        yield p


def test_pass_and_delay(clocked_proxy: FaultProxy, clock: ManualClock) -> None:
    with _connect(clocked_proxy) as sock:
        assert _echo(sock, b"hello") == b"hello"  # passing needs no time at all
        clocked_proxy.delay(0.3)
        started = clock.now
        assert _echo_on_clock(sock, b"slow", clock) - started >= 0.6  # held 0.3 s each way
        clocked_proxy.pass_through()
        sock.settimeout(5)
        assert _echo(sock, b"fast again") == b"fast again"


def test_blackhole_holds_everything_until_it_heals(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"before") == b"before"
        proxy.blackhole()
        time.sleep(0.1)
        sock.sendall(b"into the void")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        late = _connect(proxy)  # accepted, but not carried onwards
        late.sendall(b"new")
        late.settimeout(0.3)
        with pytest.raises(TimeoutError):
            late.recv(100)
        proxy.pass_through()
        sock.settimeout(5)
        late.settimeout(5)
        assert sock.recv(100) == b"into the void"
        assert late.recv(100) == b"new"
        late.close()


def _until_reset(sock: socket.socket) -> bool:
    """Echo until the connection breaks (the RST comes within a tick of the proxy, later on a busy machine)."""
    try:
        for _ in range(500):
            if not _echo(sock, b"y"):
                return True  # closed
            time.sleep(0.02)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def test_reset_cuts_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"x") == b"x"
        proxy.reset()
        assert _until_reset(sock)
    try:
        refused = _connect(proxy)
    except ConnectionResetError:
        pass  # the reset came before connect() returned (a busy machine): refused all the same
    else:
        with refused:
            assert _until_reset(refused)
    proxy.pass_through()
    with _connect(proxy) as sock:
        assert _echo(sock, b"back") == b"back"
    assert proxy.refused >= 1


def test_bandwidth_cap(clocked_proxy: FaultProxy, clock: ManualClock) -> None:
    clocked_proxy.cap(20_000)
    with _connect(clocked_proxy) as sock:
        # 20 kB out at 20 kB/s from an empty budget: a second of the proxy's clock before the last byte is through.
        assert _echo_on_clock(sock, b"a" * 20_000, clock) >= 1.0
