"""`/v1/health`'s broker check: an MQTT CONNECT with the API's credentials (aiomqtt), not a bare TCP connect."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from livinglab.embedded import MosquittoBroker, free_port
from tests.support.api import api_client

pytestmark = pytest.mark.integration


def _broker_check(database_url: str, mqtt_url: str) -> dict[str, str]:
    with api_client(database_url, mqtt_url=mqtt_url) as client:
        response = client.get("/v1/health")
    assert response.status_code == 200
    check: dict[str, str] = response.json()["checks"]["broker"]
    return check


@pytest.fixture(scope="module")
def guarded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A Mosquitto that takes one user, `api` with password `secret`."""
    directory = tmp_path_factory.mktemp("guarded")
    passwords = directory / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "api", "secret"], check=True)
    broker = MosquittoBroker(directory / "state", password_file=passwords)
    broker.start()
    yield broker  # pytest resumes here for the teardown, whatever the tests did
    broker.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback TCP server that accepts connections and never speaks MQTT."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_broker_that_accepts_the_credentials_is_ok(api_database_url: str, guarded_broker: MosquittoBroker) -> None:
    url = f"mqtt://api:secret@{guarded_broker.host}:{guarded_broker.port}"
    assert _broker_check(api_database_url, url) == {"status": "ok", "detail": None}


def test_a_broker_that_refuses_the_credentials_is_down(api_database_url: str, guarded_broker: MosquittoBroker) -> None:
    url = f"mqtt://api:wrong@{guarded_broker.host}:{guarded_broker.port}"
    check = _broker_check(api_database_url, url)
    assert check["status"] == "down"
    assert check["detail"].startswith("refused:")


def test_a_port_that_is_not_a_broker_is_down(api_database_url: str, silent_server: int) -> None:
    check = _broker_check(api_database_url, f"mqtt://127.0.0.1:{silent_server}")
    assert check["status"] == "down"
    closed = _broker_check(api_database_url, f"mqtt://127.0.0.1:{free_port()}")
    assert closed["status"] == "down"
