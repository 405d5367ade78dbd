"""MQTT deliveries through aiomqtt: QoS 1, not retained, the delivery id in the MQTT 5 user property `delivery_id`
and in the body.

One connection per deliverer, opened on first use and again after it breaks. A publish counts as delivered when
the broker acknowledged it (PUBACK); a broker that went away fails the attempt, which is retried, so a message may
arrive twice: receivers tell repeats apart by `delivery_id`. Against a broker that speaks only MQTT 3.1.1 (amqtt,
with `LIVINGLAB_MQTT_PROTOCOL=3.1.1`, or found so with `auto`) there are no user properties: the body still carries
the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from livinglab.notifications import DELIVERY_PROPERTY, MqttConfig, render_topic
from livinglab.settings import MqttUrl
from notify.errors import DeliveryError

log = logging.getLogger(__name__)


def mqtt_body(delivery_id: str, body: bytes) -> tuple[bytes, dict[str, Any]]:
    """The MQTT body (the stored payload with `delivery_id` first) and the payload itself."""
    payload: dict[str, Any] = orjson.loads(body)
    return orjson.dumps({"delivery_id": delivery_id, **payload}), payload


class MqttSender:
    def __init__(self, url: MqttUrl | None, *, client_id: str, protocol: str, timeout_s: float) -> None:
        self.url = url
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._protocols = {
            "5": [aiomqtt.ProtocolVersion.V5],
            "3.1.1": [aiomqtt.ProtocolVersion.V311],
            "auto": [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311],
        }[protocol]
        self._client: aiomqtt.Client | None = None
        self._version: aiomqtt.ProtocolVersion | None = None
        self._lock = asyncio.Lock()

    def _new_client(self, url: MqttUrl, version: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        return aiomqtt.Client(
            url.host,
            url.port,
            username=url.username,
            password=url.password,
            identifier=self.client_id,
            protocol=version,
            timeout=self.timeout_s,
            keepalive=30,
            tls_context=ssl.create_default_context() if url.tls else None,
            clean_session=True if version is aiomqtt.ProtocolVersion.V311 else None,
        )

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            if self.url is None:
                raise DeliveryError("no broker: LIVINGLAB_MQTT_URL is not set")
            errors = []
            for version in [self._version] if self._version else self._protocols:
                client = self._new_client(self.url, version)
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await client.__aenter__()
                except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                    errors.append(f"MQTT {version.name}: {exc or type(exc).__name__}")
                    continue
                self._client, self._version = client, version
                log.info("connected to the broker %s (MQTT %s)", self.url, version.name)
                return client
            raise DeliveryError(f"cannot connect to the broker {self.url}: {'; '.join(errors)}")

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(Exception):
            await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._drop(self._client)

    async def send(self, config: MqttConfig, delivery_id: str, event: str, body: bytes) -> None:
        message, payload = mqtt_body(delivery_id, body)
        topic = render_topic(config.topic, event, payload.get("alarm") or {})
        client = await self._connected()
        properties = None
        if self._version is aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [(DELIVERY_PROPERTY, delivery_id)]
        try:
            await client.publish(topic, message, qos=1, retain=False, properties=properties, timeout=self.timeout_s)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._drop(client)
            raise DeliveryError(f"publish to {topic!r} failed: {exc or type(exc).__name__}") from exc
