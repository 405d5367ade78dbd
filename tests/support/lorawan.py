"""LoRaWAN network server messages for tests: the documented examples (tests/ingest/fixtures/lorawan, sources named
in SOURCES.md) and variants derived from them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).resolve().parents[1] / "ingest" / "fixtures" / "lorawan"
#: The codec output of ChirpStack's documented codec template (`decodeUplink` returns `{data: {temp: 22.5}}`).
TEMPLATE_CODEC_OUTPUT = {"temp": 22.5}


def fixture(name: str) -> bytes:
    """A documented example, byte for byte."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(fixture(name))
    return value


def chirpstack_topic(
    dev_eui: str, event: str = "up", application_id: str = "17c82e96-be03-4f38-aef3-f83d48582d97"
) -> str:
    return f"application/{application_id}/device/{dev_eui}/event/{event}"


def tts_topic(device_id: str, event: str = "up", application: str = "app1@ttn") -> str:
    return f"v3/{application}/devices/{device_id}/{event}"


_UNSET: Any = object()


def chirpstack_uplink(
    dev_eui: str | None = None,
    output: dict[str, Any] | None = _UNSET,
    *,
    fcnt: int | None = None,
    time: str | None = _UNSET,
) -> bytes:
    """ChirpStack's documented `up` event with another device, codec output (`object`), frame counter or time.

    `output` defaults to the documented codec template's output; None leaves `object` out (no codec). `fcnt` 0 or
    None leaves `fCnt` out, as proto3 JSON does for 0.
    """
    event = fixture_json("chirpstack-up.json")
    if dev_eui is not None:
        event["deviceInfo"]["devEui"] = dev_eui
    output = TEMPLATE_CODEC_OUTPUT if output is _UNSET else output
    if output is not None:
        event["object"] = copy.deepcopy(output)
    if fcnt:
        event["fCnt"] = fcnt
    if time is None:
        del event["time"]
    elif time is not _UNSET:
        event["time"] = time
    return orjson.dumps(event)


def tts_uplink(
    dev_eui: str | None = None,
    decoded: dict[str, Any] | None = _UNSET,
    *,
    fcnt: int | None = None,
    received_at: str | None = _UNSET,
) -> bytes:
    """The Things Stack's documented uplink with another device, `decoded_payload`, `f_cnt` or receipt time (both
    `received_at` members; None removes them)."""
    message = fixture_json("tts-up.json")
    if dev_eui is not None:
        message["end_device_ids"]["dev_eui"] = dev_eui
    uplink = message["uplink_message"]
    if decoded is None:
        del uplink["decoded_payload"]
    elif decoded is not _UNSET:
        uplink["decoded_payload"] = copy.deepcopy(decoded)
    if fcnt is not None:
        uplink["f_cnt"] = fcnt
        if not fcnt:
            del uplink["f_cnt"]
    if received_at is None:
        del message["received_at"], uplink["received_at"]
    elif received_at is not _UNSET:
        message["received_at"] = uplink["received_at"] = received_at
    return orjson.dumps(message)
