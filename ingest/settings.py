"""Settings of the ingester (`livinglab ingest`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from ingest._paho import PAHO_HOOKS
from ingest.rows import Limits
from ingest.uplink_topics import DEFAULT_FILTERS, UplinkSource, check_filter
from livinglab.settings import CoreSettings, MaxLatenessS, MaxPayloadBytes, MqttProtocol


class IngestSettings(CoreSettings):
    """Ingester settings, from `LIVINGLAB_*` environment variables."""

    client_id: str = Field(
        default="livinglab-ingest-1",
        min_length=1,
        description="Fixed MQTT client id (persistent session); give every ingester its own.",
    )
    mqtt_protocol: MqttProtocol = "auto"
    shared_group: str | None = Field(
        default=None,
        description="Subscribe through `$share/<group>/...` so several ingesters split the load.",
    )
    session_expiry_s: int = Field(default=7 * 86400, ge=1, le=4294967295, description="MQTT 5 session expiry interval.")
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive in seconds.")
    receive_maximum: int = Field(
        default=4000,
        ge=1,
        le=65535,
        description="Unacknowledged QoS 1 messages the broker may send (MQTT 5 Receive Maximum); bounds memory.",
    )
    batch_size: int = Field(
        default=1000, ge=1, description="Messages per batch; at most half the in-flight window keeps the pipe full."
    )
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="Payload bytes per batch at most.")
    batch_interval_ms: int = Field(default=50, ge=1, description="A batch closes at most this long after it opens.")
    max_payload_bytes: MaxPayloadBytes = 256 * 1024
    max_records_per_message: int = Field(default=10_000, ge=1, description="Readings one message may carry.")
    max_clock_skew_s: float = Field(default=120.0, ge=0, description="How far in the future a reading may be.")
    max_lateness_s: MaxLatenessS = 7 * 86400.0
    ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description='Physical range overrides per quantity, as JSON: `{"pm25": [0, 1000]}`.',
    )
    rejected_payload_cap_bytes: int = Field(
        default=64 * 1024, ge=0, description="Bytes of a rejected payload kept for inspection and replay."
    )
    rejected_quota_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="Rejected payload bytes kept per sensor (per city, for messages naming no registered sensor) "
        "and quota period; beyond it a rejection is stored without its payload and counted as dropped.",
    )
    rejected_quota_period_s: int = Field(
        default=86400, ge=60, description="The rejected payload quota's period (UTC-aligned), in seconds."
    )
    replay_poll_s: float = Field(
        default=30.0,
        gt=0,
        description="Requested replays of rejected messages arrive by NOTIFY at once; this often the ingester also"
        " looks for requests it missed (made while no ingester was running).",
    )
    registry_refresh_s: float = Field(
        default=30.0, gt=0, description="Full sensor registry reload period (changes arrive by NOTIFY at once)."
    )
    error_notice_interval_s: float = Field(
        default=5.0, ge=0, description="At most one rejection notice per device per this many seconds."
    )
    counters_flush_s: float = Field(
        default=1.0,
        ge=0,
        description="Under load, per-sensor counters and latency histograms are written at most this often (always"
        " when the ingester is idle); a crash loses at most this much of them, never readings.",
    )
    inbox_max_messages: int = Field(
        default=0, ge=0, description="Hard limit of messages held in memory (0: four times the receive maximum)."
    )
    inbox_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Hard limit of payload bytes held in memory."
    )
    qos0_buffer_bytes: int = Field(
        default=32 * 1024 * 1024, ge=0, description="QoS 0 payload bytes held in memory; more are dropped."
    )
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First delay before reconnecting to the broker.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest delay between broker reconnects.")
    database_retry_max_s: float = Field(default=10.0, gt=0, description="Longest delay between database retries.")
    chirpstack_enabled: bool = Field(
        default=True, description="Ingest ChirpStack v4 uplinks (its MQTT integration's JSON) from the same broker."
    )
    chirpstack_topic_filter: str = Field(
        default=DEFAULT_FILTERS[UplinkSource.CHIRPSTACK],
        description="Topic filter of ChirpStack uplinks (other events it matches are ignored).",
    )
    tts_enabled: bool = Field(
        default=True,
        description="Ingest The Things Stack v3 uplinks (bridged from its MQTT server, see deploy/mosquitto).",
    )
    tts_topic_filter: str = Field(
        default=DEFAULT_FILTERS[UplinkSource.TTS],
        description="Topic filter of The Things Stack uplinks (other events it matches are ignored).",
    )
    paho_hooks: str = Field(
        default="publish,pubacks,drain",
        description="paho-mqtt private hooks the ingester uses, comma-separated (`publish`, `pubacks`, `drain`), or"
        " `none` for paho's own paths (needed to run a paho-mqtt version the hooks were not tested with).",
    )
    health_port: int | None = Field(default=None, ge=0, le=65535, description="Serve /metrics and /health here.")
    health_host: str = Field(default="127.0.0.1", description="Address of the /metrics and /health server.")

    @field_validator("shared_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("shared_group must be non-empty, without '/', '+' or '#'")
        return value or None

    @field_validator("chirpstack_topic_filter", "tts_topic_filter")
    @classmethod
    def _check_topic_filter(cls, value: str) -> str:
        return check_filter(value)

    @field_validator("paho_hooks")
    @classmethod
    def _check_hooks(cls, value: str) -> str:
        names = sorted({part.strip() for part in value.split(",") if part.strip()} - {"none"})
        unknown = set(names) - PAHO_HOOKS
        if unknown:
            known = ", ".join(sorted(PAHO_HOOKS))
            raise ValueError(f"unknown paho hooks: {', '.join(sorted(unknown))} (known: {known})")
        return ",".join(names) or "none"

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.batch_size > self.receive_maximum:
            raise ValueError("batch_size must not exceed receive_maximum (a batch is acknowledged only when full)")
        Limits(ranges=self.ranges)  # raises on unknown quantities
        return self

    def uplink_filters(self) -> list[tuple[UplinkSource, str]]:
        """The LoRaWAN sources that are on, with their topic filters (CONTRACT.md section 6)."""
        sources = [
            (self.chirpstack_enabled, UplinkSource.CHIRPSTACK, self.chirpstack_topic_filter),
            (self.tts_enabled, UplinkSource.TTS, self.tts_topic_filter),
        ]
        return [(source, topic_filter) for enabled, source, topic_filter in sources if enabled]

    @property
    def paho_hook_names(self) -> frozenset[str]:
        """The hooks `paho_hooks` names."""
        return frozenset() if self.paho_hooks == "none" else frozenset(self.paho_hooks.split(","))

    @property
    def inbox_limit(self) -> int:
        return self.inbox_max_messages or 4 * self.receive_maximum

    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_records=self.max_records_per_message,
            max_clock_skew_s=self.max_clock_skew_s,
            max_lateness_s=self.max_lateness_s,
            ranges=self.ranges,
        )
