"""The fault proxy itself, against an echo server: each mode does what the scenarios rely on."""

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


def test_pass_and_delay(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"hello") == b"hello"
        proxy.delay(0.3)
        started = time.monotonic()
        assert _echo(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.6  # held 0.3 s each way: a lower bound, never flaky
        proxy.pass_through()
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
    with _connect(proxy) as refused:
        assert _until_reset(refused)
    proxy.pass_through()
    with _connect(proxy) as sock:
        assert _echo(sock, b"back") == b"back"
    assert proxy.refused >= 1


def test_bandwidth_cap(proxy: FaultProxy) -> None:
    proxy.cap(20_000)
    with _connect(proxy) as sock:
        started = time.monotonic()
        assert _echo(sock, b"a" * 20_000) == b"a" * 20_000
        # 20 kB each way at 20 kB/s from an empty budget: at least about a second (a lower bound).
        assert time.monotonic() - started >= 0.8
