"""What one connection may cost the API, tried over raw sockets against a real uvicorn (the `livinglab api`
configuration, `api.server`): oversized and overlong request heads, slowloris heads and bodies, idle connections.
The API must answer 431 or 408 (or close an idle connection) and close, never wait for ever or buffer without end.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.api import SseReader, admin_key, serving

pytestmark = pytest.mark.integration

HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_HEADER_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def key(database: str) -> str:
    return admin_key(database, "connections")


@pytest.fixture(scope="module")
def address(database: str) -> Iterator[tuple[str, int]]:
    settings = {
        "request_head_timeout_s": HEAD_TIMEOUT_S,
        "request_body_timeout_s": BODY_TIMEOUT_S,
        "max_header_bytes": MAX_HEADER_BYTES,
        "max_header_count": 50,
        "sse_heartbeat_s": 0.3,
    }
    with serving(database, **settings) as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails if it keeps it open past `timeout_s`)."""
    sock.settimeout(timeout_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _send_until_cut(sock: socket.socket, chunks: list[bytes], interval_s: float = 0.0) -> int:
    """Send `chunks` (pausing between them); the bytes sent before the server cut the connection, or -1 if it
    never did."""
    sent = 0
    for chunk in chunks:
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(chunk)
        if interval_s:
            time.sleep(interval_s)
    return -1


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _problem(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    document: dict[str, object] = json.loads(body)
    return document


def test_an_oversized_header_is_refused_without_reading_it(address: tuple[str, int]) -> None:
    sock = _connect(address)
    try:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        sent = _send_until_cut(sock, [b"a" * 65536] * (20 * 16))  # 20 MiB, as the finding's attack sent
        response = _read_until_closed(sock)
    finally:
        sock.close()
    assert 0 <= sent < 4 * 1024 * 1024, sent  # cut off after what the kernel's buffers took
    if response:  # the 431 may be lost when the close resets a connection with unread bytes
        assert _status(response) == 431
        assert "16384 bytes" in str(_problem(response)["detail"])


def test_a_head_just_below_the_limit_is_served(address: tuple[str, int]) -> None:
    padding = "a" * (MAX_HEADER_BYTES - 200)
    response = httpx.get(f"http://{address[0]}:{address[1]}/v1/health", headers={"X-Padding": padding}, timeout=10)
    assert response.status_code in (200, 503)


def test_too_many_headers_get_431(address: tuple[str, int]) -> None:
    headers = {f"X-H{i}": "1" for i in range(60)}
    response = httpx.get(f"http://{address[0]}:{address[1]}/v1/health", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["connection"] == "close"


def test_a_slowloris_head_gets_408_and_the_connection_is_closed(address: tuple[str, int]) -> None:
    sock = _connect(address)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        # One byte of a header every 0.2 s: each byte would reset a per-read timer, never the head's deadline.
        sent = _send_until_cut(sock, [bytes([b]) for b in b"X-Slow: " + b"a" * 100], interval_s=0.2)
        response = _read_until_closed(sock)
    finally:
        sock.close()
    assert sent >= 0  # cut off before the trickle ended
    assert time.monotonic() - started < 20 * 0.2
    if response:
        assert _status(response) == 408
        assert _problem(response)["status"] == 408


def test_an_idle_connection_is_closed(address: tuple[str, int]) -> None:
    sock = _connect(address)
    try:
        assert _read_until_closed(sock) == b""  # closed by the server, without a word
    finally:
        sock.close()


def test_the_next_head_on_a_kept_alive_connection_has_the_same_deadline(address: tuple[str, int]) -> None:
    sock = _connect(address)
    try:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        first = sock.recv(65536)
        assert _status(first) in (200, 503)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
        response = _read_until_closed(sock)
    finally:
        sock.close()
    assert _status(response) == 408


def test_a_slow_body_gets_408_and_the_connection_is_closed(address: tuple[str, int], key: str) -> None:
    sock = _connect(address)
    try:
        sock.sendall(
            b"POST /v1/sensors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n".encode()
        )
        sent = _send_until_cut(sock, [b" " * 10] * 100, interval_s=0.1)
        response = _read_until_closed(sock)
    finally:
        sock.close()
    assert 0 <= sent < 1000
    assert _status(response) == 408
    assert "did not arrive" in str(_problem(response)["detail"])


def test_an_event_stream_outlives_both_deadlines(address: tuple[str, int], key: str) -> None:
    base = f"http://{address[0]}:{address[1]}"
    started = time.monotonic()
    with (
        httpx.Client(base_url=base, timeout=10) as http,
        http.stream("GET", "/v1/stream", headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        assert response.status_code == 200
        reader = SseReader(response)
        while time.monotonic() - started < HEAD_TIMEOUT_S + BODY_TIMEOUT_S + 1:
            assert reader.next_comment() in ("heartbeat", "connected") or reader.next_comment()
