"""Settings of the ingester (`livinglab ingest`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from livinglab.settings import CoreSettings


class IngestSettings(CoreSettings):
    """Ingester settings, from `LIVINGLAB_*` environment variables."""

    client_id: str = Field(default="livinglab-ingest-1", description="Fixed MQTT client id (persistent session).")
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version: 5, or 3.1.1 for brokers that speak only 3.1.1 (amqtt)."
    )
    shared_group: str | None = Field(
        default=None,
        description="Subscribe through `$share/<group>/...` so several ingesters split the load.",
    )
    session_expiry_s: int = Field(default=7 * 86400, ge=1, description="MQTT 5 session expiry interval.")
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive in seconds.")
    batch_size: int = Field(default=500, ge=1, description="Messages per batch; keep within the broker's in-flight.")
    batch_interval_ms: int = Field(default=200, ge=1, description="A batch closes at most this long after it opens.")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1, description="Larger payloads are rejected.")
    max_records_per_message: int = Field(default=10_000, ge=1, description="Readings one message may carry.")
    max_clock_skew_s: float = Field(default=120.0, ge=0, description="How far in the future a reading may be.")
    max_lateness_s: float = Field(default=7 * 86400.0, ge=0, description="How old a reading may be.")
    rejected_payload_cap_bytes: int = Field(
        default=64 * 1024, ge=0, description="Bytes of a rejected payload kept for inspection and replay."
    )
    registry_refresh_s: float = Field(default=1.0, gt=0, description="Sensor registry reload period.")
    health_port: int | None = Field(default=None, description="Serve /metrics and /health on this port.")
