"""Settings of the API service (`livinglab api`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from livinglab.resilience import DatabasePolicy
from livinglab.settings import CoreSettings


class ApiSettings(CoreSettings):
    """API settings, from `LIVINGLAB_*` environment variables."""

    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port the API listens on.")
    public_read: bool = Field(default=False, description="Serve read endpoints without an API key.")
    statement_timeout_ms: int = Field(default=5000, ge=1, description="Statement timeout of every API query.")
    delete_timeout_ms: int = Field(
        default=120_000, ge=1, description="Statement timeout when deleting a sensor and all its stored rows."
    )
    pool_min_size: int = Field(default=1, ge=1, description="Database connections the API keeps open.")
    pool_max_size: int = Field(default=8, ge=1, description="Most database connections the API opens.")
    pool_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for a free database connection before answering 503."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Larger request bodies get 413.")
    max_page_size: int = Field(default=1000, ge=1, description="Largest `limit` a list accepts.")
    max_range_days: int = Field(
        default=400, ge=1, description="Longest `start`..`end` span of aggregate, index and service-level queries."
    )
    max_readings_range_days: int = Field(
        default=31, ge=1, description="Longest `start`..`end` span of raw readings and 1-minute aggregates."
    )
    max_export_days: int = Field(
        default=366, ge=1, description="Longest `start`..`end` span of an export (`/v1/export/...`)."
    )
    max_concurrent_exports: int = Field(
        default=4,
        ge=1,
        description="Exports streamed at once (each holds a database connection of its own); 503 beyond.",
    )
    export_timeout_ms: int = Field(
        default=600_000,
        ge=0,
        description="Statement timeout of each series an export copies (it runs as long as the client takes to "
        "read it); 0: none.",
    )
    rate_limit_per_s: float = Field(
        default=50.0,
        ge=0,
        description="Sustained requests per second per API key (or per client address "
        "without a key); 0 turns rate limiting off. Beyond it: 429 with Retry-After.",
    )
    rate_limit_burst: int = Field(default=200, ge=1, description="Requests a key may send at once above the rate.")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks (CIDR) of reverse proxies whose `X-Forwarded-For` names "
        "the client, for rate limiting by address; empty: the header is ignored and the peer address counts.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers; beyond: 431 and the connection is closed.",
    )
    max_header_count: int = Field(default=100, ge=10, description="Most request headers; beyond: 431.")
    request_head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection must send a request's line and headers within this many seconds of opening (or "
        "of its previous response); else 408 and the connection is closed.",
    )
    request_body_timeout_s: float = Field(
        default=30.0, gt=0, description="A request body must arrive within this many seconds; else 408 and close."
    )
    key_cache_s: float = Field(
        default=5.0, ge=0, description="How long a checked API key is remembered (a revoked key stops within this)."
    )
    response_cache_s: float = Field(
        default=1.0,
        ge=0,
        description="How long an index, traffic, aggregate or service-level page may be served again to the next "
        "client asking for the same URL, unless new results arrive first; each page is kept a random 75-100 % of "
        "it, so pages cached together do not all expire at once; 0 turns the cache off.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Leave what the API process holds at startup out of the garbage collector's full passes "
        "(`gc.freeze`), which otherwise stop serving for tens of milliseconds every few seconds under load.",
    )
    sse_heartbeat_s: float = Field(default=15.0, gt=0, description="Interval of SSE heartbeat comments.")
    sse_max_backlog: int = Field(
        default=10_000, ge=1, description="Most missed events a reconnecting SSE client is sent from the events table."
    )
    target_air: float = Field(
        default=0.90, ge=0, le=1, description="Service level target: share of valid station-hours with ISPU <= 100."
    )
    target_traffic: float = Field(
        default=0.80, ge=0, le=1, description="Service level target: share of sensor-hours meeting the LOS target."
    )
    target_data: float = Field(
        default=0.95, ge=0, le=1, description="Service level target: received / expected readings."
    )
    dashboard_districts: Path | None = Field(
        default=None,
        description="GeoJSON FeatureCollection of district outlines (feature properties `district` and `city`) "
        "drawn under the dashboard's map, e.g. from `livinglab simulate --print-districts`; without it the map "
        "derives outlines from sensor positions.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        entries = [e.strip() for e in value.split(",") if e.strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return ",".join(entries)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.trusted_proxies.split(",") if e)

    def database_policy(self) -> DatabasePolicy:
        """The API's deadlines: its requests' statement timeout, and the grace every role uses."""
        return DatabasePolicy(timeout_s=self.statement_timeout_ms / 1000, grace_s=self.database_grace_s)
