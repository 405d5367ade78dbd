"""LoRaWAN sensors of a simulated city: readings wrapped in a network server's uplink, as ChirpStack v4 or The Things
Stack v3 publishes it (CONTRACT.md section 6).

A LoRaWAN device sends one uplink per reading time; its codec output names the readings after their quantities (a
sensor that reports a quantity in another unit gets a `field_map` entry with that unit). The network server's
`time` is when the uplink arrived (the simulated publish time); when that is not the reading's own time (counts,
which are stamped with the start of their interval, late or buffered uplinks, a skewed device clock) the codec
output carries the reading's time in `ts`. The frame counter is the device's uplink number, one per reading time,
so a reading that never arrives leaves a gap in it.

Each sensor gets a DevEUI derived from its id (unless the scenario gives one), so registering the scenario
(`--register`, `--print-registry`) and publishing agree.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from livinglab.domain import QUANTITIES
from livinglab.sensors import SensorSpec
from simulators.messages import Record, format_value
from simulators.scenario import Scenario, SimSensor

Network = Literal["chirpstack", "tts"]
NETWORKS: tuple[Network, ...] = ("chirpstack", "tts")
#: Members a device's codec reports besides readings (the `extra_members` fault): the platform ignores and counts them.
EXTRA_MEMBERS: dict[str, Any] = {"battery": 3.61, "firmware": "1.4.2", "status": {"heater": True, "error": 0}}
#: The first bytes of every derived DevEUI (an IEEE OUI-36 block reserved for documentation would do as well).
_DEV_EUI_PREFIX = "70b3d5e7"
_TENANT = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
_APPLICATION = "17c82e96-be03-4f38-aef3-f83d48582d97"
_PROFILE = "14855bf7-d10d-4aee-b618-ebfcb64dc7ad"


def network_of(sensor: SimSensor, default: Network | None) -> Network | None:
    """The network server a sensor's uplinks go through: the run's choice, else its model's (None: direct MQTT)."""
    return default or sensor.model.network


def dev_eui_of(sensor_id: str, taken: set[str] | None = None) -> str:
    """A DevEUI for a simulated sensor: stable for its id, unique among `taken` (which it joins)."""
    number = zlib.crc32(sensor_id.encode("utf-8"))
    while True:
        dev_eui = f"{_DEV_EUI_PREFIX}{number:08x}"
        if taken is None or dev_eui not in taken:
            break
        number = (number + 1) & 0xFFFFFFFF
    if taken is not None:
        taken.add(dev_eui)
    return dev_eui


def field_map_of(sensor: SimSensor) -> dict[str, Any] | None:
    """The field map a sensor's codec output needs: units other than the canonical ones."""
    units = {
        name: {"quantity": name, "unit": unit}
        for name, unit in sensor.model.units.items()
        if unit != QUANTITIES[name].unit
    }
    return units or None


def lorawan_scenario(scenario: Scenario, network: Network | None) -> Scenario:
    """The scenario with a DevEUI (and the field map its codec needs) on every sensor that sends through a network
    server; the scenario itself when none does."""
    taken = {s.spec.dev_eui for s in scenario.sensors if s.spec.dev_eui}
    sensors = []
    changed = False
    for sensor in scenario.sensors:
        if network_of(sensor, network) is None or (sensor.spec.dev_eui and sensor.spec.field_map is not None):
            sensors.append(sensor)
            continue
        update: dict[str, Any] = {}
        if not sensor.spec.dev_eui:
            update["dev_eui"] = dev_eui_of(sensor.sensor_id, taken)
        if sensor.spec.field_map is None:
            update["field_map"] = field_map_of(sensor)
        spec = SensorSpec.model_validate({**sensor.spec.model_dump(mode="json", exclude_none=True), **update})
        sensors.append(replace(sensor, spec=spec))
        changed = True
    if not changed:
        return scenario
    return Scenario(
        scenario.name,
        scenario.city,
        scenario.timezone_offset_h,
        scenario.districts,
        tuple(sensors),
        scenario.deployed_at_s,
        scenario.description,
    )


def frame_counter(reading_ts: float, interval_s: int) -> int:
    """A device's uplink number for the reading due at `reading_ts`: one per reading time (32 bits, as LoRaWAN)."""
    return int(reading_ts // interval_s) & 0xFFFFFFFF


def rfc3339(ts: float, *, zulu: bool) -> str:
    """`ts` as RFC 3339 with nine fractional digits, as both servers write times."""
    whole = int(ts // 1)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{nanos:09d}{'Z' if zulu else '+00:00'}"


def uplink_topic(network: Network, sensor_id: str, dev_eui: str) -> str:
    """Where the network server publishes the uplinks of a device (the servers' default topics)."""
    if network == "chirpstack":
        return f"application/{_APPLICATION}/device/{dev_eui}/event/up"
    return f"v3/livinglab-sim@ttn/devices/{sensor_id}/up"


def codec_output(records: Sequence[Record], publish_at: float, *, extra: bool) -> dict[str, Any]:
    """The codec output of one uplink: a member per quantity (in the unit the device reports), `ts` when the
    readings are not of the uplink's own time, and the device's other members when `extra`."""
    output: dict[str, Any] = {name: format_value(value, unit, name) for name, _, value, unit in records}
    ts = records[0][1]
    if ts != publish_at:
        output["ts"] = int(ts) if float(ts).is_integer() else ts
    if extra:
        output.update(EXTRA_MEMBERS)
    return output


def uplink_payload(
    network: Network,
    *,
    sensor_id: str,
    dev_eui: str,
    output: dict[str, Any] | None,
    fcnt: int,
    publish_at: float,
) -> bytes:
    """The JSON a network server publishes for an uplink (`output` None: the device has no codec)."""
    digest = hashlib.blake2b(f"{dev_eui}:{fcnt}:{publish_at!r}".encode(), digest_size=16).hexdigest()
    raw = base64.b64encode(bytes.fromhex(digest[:22])).decode()
    if network == "chirpstack":
        return _chirpstack(sensor_id, dev_eui, output, fcnt, publish_at, digest, raw)
    return _tts(sensor_id, dev_eui, output, fcnt, publish_at, digest, raw)


def _uuid(digest: str) -> str:
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _chirpstack(
    sensor_id: str, dev_eui: str, output: dict[str, Any] | None, fcnt: int, at: float, digest: str, raw: str
) -> bytes:
    # Members in the order of UplinkEvent (integration.proto); zero values are left out, as proto3 JSON does.
    event: dict[str, Any] = {
        "deduplicationId": _uuid(digest),
        "time": rfc3339(at, zulu=False),
        "deviceInfo": {
            "tenantId": _TENANT,
            "tenantName": "Living Lab",
            "applicationId": _APPLICATION,
            "applicationName": "city-sensors",
            "deviceProfileId": _PROFILE,
            "deviceProfileName": "city-sensor-as923",
            "deviceName": sensor_id,
            "devEui": dev_eui,
            "tags": {"platform": "livinglab"},
        },
        "devAddr": digest[22:30],
        "adr": True,
        "dr": 2,
        "fCnt": fcnt,
        "fPort": 2,
        "data": raw,
        "object": output,
        "rxInfo": [
            {
                "gatewayId": "0016c001f153a14c",
                "uplinkId": int(digest[:8], 16),
                "rssi": -97,
                "snr": 6.2,
                "channel": 3,
                "location": {"latitude": -6.1754, "longitude": 106.8272, "altitude": 21.0},
                "context": "E3OWOQ==",
                "metadata": {"region_config_id": "as923", "region_common_name": "AS923"},
                "crcStatus": "CRC_OK",
            }
        ],
        "txInfo": {
            "frequency": 923200000,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 10, "codeRate": "CR_4_5"}},
        },
    }
    if not fcnt:
        del event["fCnt"]
    if output is None:
        del event["object"]
    return orjson.dumps(event)


def _tts(
    sensor_id: str, dev_eui: str, output: dict[str, Any] | None, fcnt: int, at: float, digest: str, raw: str
) -> bytes:
    received = rfc3339(at, zulu=True)
    uplink: dict[str, Any] = {
        "session_key_id": base64.b64encode(bytes.fromhex(digest[:32])).decode(),
        "f_port": 2,
        "f_cnt": fcnt,
        "frm_payload": raw,
        "decoded_payload": output,
        "rx_metadata": [
            {
                "gateway_ids": {"gateway_id": "jakarta-gw-01", "eui": "9C5C8E00001A05C4"},
                "time": received,
                "timestamp": int(digest[:8], 16),
                "rssi": -97,
                "channel_rssi": -97,
                "snr": 6.2,
                "uplink_token": "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6L3Vlgk=",
                "channel_index": 3,
                "received_at": received,
            }
        ],
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 10, "coding_rate": "4/5"}},
            "frequency": "923200000",
            "timestamp": int(digest[:8], 16),
        },
        "received_at": received,
        "consumed_airtime": "0.370688s",
        "network_ids": {"net_id": "000013", "tenant_id": "ttn", "cluster_id": "au1"},
    }
    if not fcnt:
        del uplink["f_cnt"]
    if output is None:
        del uplink["decoded_payload"]
    message = {
        "end_device_ids": {
            "device_id": sensor_id,
            "application_ids": {"application_id": "livinglab-sim"},
            "dev_eui": dev_eui.upper(),
            "join_eui": "0000000000000000",
            "dev_addr": digest[22:30].upper(),
        },
        "correlation_ids": [f"as:up:{digest[:26].upper()}", f"gs:uplink:{digest[6:32].upper()}"],
        "received_at": received,
        "uplink_message": uplink,
    }
    return orjson.dumps(message)
