"""The broker as the API sees it: an MQTT CONNECT with the API's credentials, through aiomqtt.

A TCP connection alone would call a port that is not a broker, or a broker that refuses the API's credentials,
healthy; a CONNECT answered with a successful CONNACK is what the platform needs. MQTT 3.1.1 is spoken by every
broker the platform runs with (amqtt too). The client id is new each time and the session clean, so a check leaves
nothing behind on the broker.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl

import aiomqtt

from livinglab.settings import MqttUrl


async def check_broker(url: MqttUrl, *, timeout_s: float = 2.0) -> str | None:
    """None when the broker accepts a CONNECT within `timeout_s`, else a short reason."""
    client = aiomqtt.Client(
        url.host,
        url.port,
        username=url.username,
        password=url.password,
        identifier=f"livinglab-api-health-{secrets.token_hex(6)}",
        clean_session=True,
        timeout=timeout_s,
        keepalive=max(5, round(timeout_s * 2)),
        tls_context=ssl.create_default_context() if url.tls else None,
    )
    try:
        async with asyncio.timeout(timeout_s), client:
            pass
    except aiomqtt.MqttCodeError as exc:
        return f"refused: {exc}"
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return type(exc).__name__
    return None
