"""Settings shared by every deployable, read from `LIVINGLAB_*` environment variables.

Each role extends `CoreSettings` with its own class (`ingest.IngestSettings`, `processing.ProcessorSettings`,
`api.ApiSettings`, `simulators.SimulatorSettings`). Settings are read once, at the edge (the CLI), and passed down;
no other module reads the environment.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from livinglab.errors import ConfigurationError
from livinglab.resilience import DatabasePolicy


def default_data_dir() -> Path:
    """Where the embedded database and broker keep their state: `$XDG_DATA_HOME/livinglab`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "livinglab"


_INTERVAL_RE = re.compile(
    r"^\s*(\d+\s*(microsecond|millisecond|second|minute|hour|day|week|month|year)s?\s*)+$", re.IGNORECASE
)
_OFF = frozenset({"", "off", "none", "forever", "keep"})


def parse_interval(value: object) -> str | None:
    """A PostgreSQL interval setting such as `90 days` or `1 day 12 hours`; None for `off` (or unset).

    Only whole numbers of named units pass, so the text is safe to hand to PostgreSQL and means the same there.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("an interval is text such as '90 days'")
    text = value.strip()
    if text.lower() in _OFF:
        return None
    match = _INTERVAL_RE.match(text)
    units = [u.lower() for u in re.findall(r"[a-z]+", text, re.IGNORECASE)]
    if not match or len({u.rstrip("s") for u in units}) != len(units):
        raise ValueError(f"{value!r} is not an interval such as '90 days' or '12 hours' (or 'off')")
    return " ".join(text.split())


#: Settings that two roles read under one name (each role's class declares it with its default, in its own place
#: of the settings table): what the value may be and what it means.
MqttProtocol = Annotated[
    Literal["auto", "5", "3.1.1"],
    Field(description="MQTT version: 5, 3.1.1 (brokers that speak only 3.1.1, such as amqtt), or auto (try 5 first)."),
]
MaxPayloadBytes = Annotated[int, Field(ge=1, description="Larger payloads are rejected.")]
MaxLatenessS = Annotated[float, Field(ge=0, description="How old a reading may be.")]


class TimescaleMode(enum.StrEnum):
    """Whether migrations use TimescaleDB: `auto` when the extension can be created, `require` or `off`."""

    AUTO = "auto"
    REQUIRE = "require"
    OFF = "off"


class CoreSettings(BaseSettings):
    """Settings every role reads."""

    model_config = SettingsConfigDict(env_prefix="LIVINGLAB_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: `livinglab up` starts an embedded PostgreSQL in the data directory.",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="`mqtt://[user:password@]host:port` or `mqtts://...`. Unset: `livinglab up` starts a broker.",
    )
    topic_prefix: str = Field(default="livinglab/v1", description="Prefix of every device topic.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="State of the embedded services (default `~/.local/share/livinglab`).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    timescaledb: TimescaleMode = Field(default=TimescaleMode.AUTO, description="Use TimescaleDB: auto, require, off.")
    chunk_interval: str = Field(
        default="1 day",
        description="TimescaleDB chunk interval of readings and agg_1m (agg_1h: 30x, agg_1d: 365x); set before the "
        "first migration.",
    )
    compress_after: str | None = Field(
        default="8 days",
        description="TimescaleDB: compress readings and agg_1m chunks older than this (keep it above the maximum "
        "lateness); `off` disables. Applied by `livinglab migrate`.",
    )
    retention_readings: str | None = Field(
        default="90 days", description="Keep raw readings this long (`off`: forever)."
    )
    retention_agg_1m: str | None = Field(default="365 days", description="Keep 1-minute aggregates this long.")
    retention_agg_1h: str | None = Field(default=None, description="Keep hourly aggregates this long (unset: forever).")
    retention_agg_1d: str | None = Field(default=None, description="Keep daily aggregates this long (unset: forever).")
    retention_counters: str | None = Field(
        default="365 days", description="Keep per-sensor ingest counters and latency histograms this long."
    )
    retention_rejected: str | None = Field(default="30 days", description="Keep rejected messages this long.")
    retention_events: str | None = Field(
        default="7 days", description="Keep change events (what a reconnecting SSE client can catch up on) this long."
    )
    retention_deliveries: str | None = Field(
        default="30 days",
        description="Keep delivered and failed alarm notifications (the channels' delivery logs) this long; pending"
        " ones stay until they are delivered or fail.",
    )
    allowed_lateness_s: int = Field(
        default=7200, ge=0, description="A window is final once its end plus this many seconds has passed."
    )
    database_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A role's database statement running longer, or a transaction left idle this long, is ended by"
        " the server (statement_timeout, idle_in_transaction_session_timeout); the API's requests use"
        " `LIVINGLAB_STATEMENT_TIMEOUT_MS` instead.",
    )
    database_grace_s: float = Field(
        default=5.0,
        gt=0,
        description="A database connection that has not answered for its timeout plus this long is taken for a"
        " silent link and cut (the work is retried on a new one); also the TCP keepalive idle time.",
    )

    @field_validator(
        "compress_after",
        "retention_readings",
        "retention_agg_1m",
        "retention_agg_1h",
        "retention_agg_1d",
        "retention_counters",
        "retention_rejected",
        "retention_events",
        "retention_deliveries",
        mode="before",
    )
    @classmethod
    def _check_interval(cls, value: object) -> object:
        return parse_interval(value)

    @field_validator("chunk_interval")
    @classmethod
    def _check_chunk_interval(cls, value: str) -> str:
        parsed = parse_interval(value)
        if parsed is None:
            raise ValueError("chunk_interval cannot be off")
        return parsed

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "+#\x00"):
            raise ValueError("topic_prefix must be a non-empty topic without wildcards")
        return value

    def database_policy(self) -> DatabasePolicy:
        """The deadlines of this role's database connections (see `livinglab.resilience`)."""
        return DatabasePolicy(timeout_s=self.database_timeout_s, grace_s=self.database_grace_s)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigurationError("LIVINGLAB_DATABASE_URL is not set")
        return self.database_url

    def require_mqtt_url(self) -> MqttUrl:
        if not self.mqtt_url:
            raise ConfigurationError("LIVINGLAB_MQTT_URL is not set")
        return MqttUrl.parse(self.mqtt_url)


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed `LIVINGLAB_MQTT_URL`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigurationError(f"MQTT URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigurationError("MQTT URL has no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigurationError(f"MQTT URL has a bad port: {exc}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"
