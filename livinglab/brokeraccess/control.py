"""Talking to a running broker's dynamic security plugin through its control topic, as `mosquitto_ctrl` does.

Commands are JSON published to `$CONTROL/dynamic-security/v1` by a client with the administrator's role; the
plugin answers on `.../response` and writes its configuration file, so a change takes effect at once and survives
a restart. Each command carries a correlation id, and an answer with an `error` raises `BrokerAccessError`.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from livinglab.brokeraccess.dynsec import BrokerAccessError
from livinglab.settings import MqttUrl

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"


class DynsecControl:
    """A connected administrator; use `connected(url)`."""

    def __init__(self, client: mqtt.Client, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._answers: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._arrived:
            for response in responses:
                if isinstance(response, dict) and "correlationData" in response:
                    self._answers[str(response["correlationData"])] = response
            self._arrived.notify_all()

    def run(self, command: str, **fields: Any) -> dict[str, Any]:
        """Send one command and return its `data` (empty when it has none); raise on an error answer."""
        correlation = secrets.token_hex(8)
        body = {"commands": [{"command": command, **fields, "correlationData": correlation}]}
        self._client.publish(CONTROL_TOPIC, json.dumps(body), qos=1)
        with self._arrived:
            if not self._arrived.wait_for(lambda: correlation in self._answers, timeout=self._timeout_s):
                raise BrokerAccessError(f"no answer from the broker to {command} within {self._timeout_s:g} s")
            answer = self._answers.pop(correlation)
        if "error" in answer:
            raise BrokerAccessError(f"{command}: {answer['error']}")
        data: dict[str, Any] = answer.get("data") or {}
        return data

    def exists(self, command: str, **fields: Any) -> bool:
        """Whether a `getClient` / `getRole` finds what it asks for."""
        try:
            self.run(command, **fields)
        except BrokerAccessError as exc:
            if "not found" in str(exc):
                return False
            raise
        return True


@contextmanager
def connected(url: MqttUrl, *, timeout_s: float = 10.0) -> Iterator[DynsecControl]:
    """A `DynsecControl` connected to the broker at `url` (whose user must hold the administrator's role)."""
    if not url.username:
        raise BrokerAccessError("the broker URL needs the administrator's user name and password")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"livinglab-admin-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    control = DynsecControl(client, timeout_s)
    ready = threading.Event()
    outcome: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            outcome.append(f"the broker refused the administrator: {reason}")
            ready.set()
        else:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        if any(r.is_failure for r in reasons):
            outcome.append("the broker refused the control topic: the user lacks the administrator's role")
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = control._on_message
    try:
        client.connect(url.host, url.port)
    except OSError as exc:
        raise BrokerAccessError(f"cannot reach the broker at {url}: {exc}") from exc
    client.loop_start()
    try:
        if not ready.wait(timeout_s):
            raise BrokerAccessError(f"no answer from the broker at {url} within {timeout_s:g} s")
        if outcome:
            raise BrokerAccessError(outcome[0])
        yield control
    finally:
        client.disconnect()
        client.loop_stop()
