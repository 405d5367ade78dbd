"""MQTT packets built by hand, for the two clients that talk to a broker below paho: the ingester's protocol probe
(an MQTT 5 CONNECT) and the simulators' lean load publisher (MQTT 3.1.1 CONNECT and PUBLISH)."""

from __future__ import annotations

import struct
from typing import Literal

from livinglab.settings import MqttUrl


def utf8_field(text: str) -> bytes:
    """A UTF-8 string as MQTT carries it: a 2-byte length, then the bytes."""
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def remaining_length(n: int) -> bytes:
    """`n` as MQTT's variable byte integer (7 bits a byte, least significant first)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(url: MqttUrl, client_id: str, *, level: Literal[4, 5], keepalive_s: int) -> bytes:
    """A CONNECT with a clean start (no session to resume) and the URL's user name and password, for MQTT 3.1.1
    (protocol level 4) or MQTT 5 (level 5, no properties)."""
    flags = 0x02
    payload = utf8_field(client_id)
    if url.username is not None:
        flags |= 0x80
        payload += utf8_field(url.username)
        if url.password is not None:
            flags |= 0x40
            payload += utf8_field(url.password)
    variable = utf8_field("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive_s)
    if level == 5:
        variable += b"\x00"  # property length
    body = variable + payload
    return bytes([0x10]) + remaining_length(len(body)) + body
