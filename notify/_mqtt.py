"""MQTT deliveries through aiomqtt: QoS 1, not retained, the delivery id in the MQTT 5 user property `delivery_id`
and in the body.

One connection per deliverer, opened on first use and again after it breaks. A publish counts as delivered when
the broker acknowledged it (PUBACK) with a reason code of success; a broker that went away, or that refused the
publish in its PUBACK (MQTT 5: Mosquitto answers 0x87 Not authorized to a topic the account may not write), fails
the attempt, which is retried, so a message may arrive twice: receivers tell repeats apart by `delivery_id`. Against
a broker that speaks only MQTT 3.1.1 (amqtt, with `LIVINGLAB_MQTT_PROTOCOL=3.1.1`, or found so with `auto`) there
are no user properties, the body still carries the id, and a refused publish cannot be told from an accepted one
(MQTT 3.1.1 has no reason codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from contextvars import ContextVar
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from livinglab.notifications import DELIVERY_PROPERTY, MqttConfig, render_topic
from livinglab.settings import MqttUrl
from notify.errors import DeliveryError

log = logging.getLogger(__name__)


def mqtt_body(delivery_id: str, body: bytes) -> tuple[bytes, dict[str, Any]]:
    """The MQTT body (the stored payload with `delivery_id` first) and the payload itself."""
    payload: dict[str, Any] = orjson.loads(body)
    return orjson.dumps({"delivery_id": delivery_id, **payload}), payload


#: The packet id of the publish this task just handed to paho (`AckedClient`); -1 until it has handed one.
_PACKET_ID: ContextVar[int] = ContextVar("livinglab_notify_packet_id", default=-1)


class AckedClient(aiomqtt.Client):
    """aiomqtt's client, keeping what each PUBACK says.

    aiomqtt completes a publish on any PUBACK and drops its reason code, while an MQTT 5 broker refuses a publish
    there (0x80 and above). This client keeps the codes of refusals by packet id until `publish_refusal` reads them;
    it hooks two of aiomqtt's private parts (`Client._on_publish`, where aiomqtt hears paho's PUBACKs, and the paho
    client in `Client._client`), checked when it is made, so an aiomqtt that changed them fails at once
    (`RuntimeError`) instead of counting refused publishes as delivered. pyproject.toml pins aiomqtt to the minor
    version the tests ran on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, ReasonCode] = {}
        paho: Any = getattr(self, "_client", None)
        if not isinstance(paho, mqtt.Client) or paho.on_publish != self._on_publish:
            raise RuntimeError(
                f"aiomqtt {getattr(aiomqtt, '__version__', '?')} no longer hears PUBACKs in Client._on_publish:"
                " the MQTT channel could not tell a refused publish from a delivered one"
            )
        paho_publish = paho.publish

        def publish(*args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
            info: mqtt.MQTTMessageInfo = paho_publish(*args, **kwargs)
            self._refusals.pop(info.mid, None)  # a packet id used again: what an earlier PUBACK said is not for it
            _PACKET_ID.set(info.mid)
            return info

        paho.publish = publish  # type: ignore[method-assign]  # this instance only

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        if reason_code.is_failure:
            self._refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_refusal(
        self, topic: str, payload: bytes, *, properties: Properties | None, timeout: float
    ) -> ReasonCode | None:
        """Publish at QoS 1, not retained; the PUBACK's reason code when the broker refused the message, else None."""
        _PACKET_ID.set(-1)
        await self.publish(topic, payload, qos=1, retain=False, properties=properties, timeout=timeout)
        packet_id = _PACKET_ID.get()
        if packet_id < 0:
            raise RuntimeError("aiomqtt published without handing the message to paho's Client.publish")
        return self._refusals.pop(packet_id, None)


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
        self._client: AckedClient | None = None
        self._version: aiomqtt.ProtocolVersion | None = None
        self._lock = asyncio.Lock()

    def _new_client(self, url: MqttUrl, version: aiomqtt.ProtocolVersion) -> AckedClient:
        return AckedClient(
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

    async def _connected(self) -> AckedClient:
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

    async def _drop(self, client: AckedClient) -> None:
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
            refused = await client.publish_refusal(topic, message, properties=properties, timeout=self.timeout_s)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._drop(client)
            raise DeliveryError(f"publish to {topic!r} failed: {exc or type(exc).__name__}") from exc
        if refused is not None:
            raise DeliveryError(f"the broker refused the publish to {topic!r}: {refused} ({refused.value:#04x})")
