"""Settings of the deliverer (`livinglab notify`)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from livinglab.settings import CoreSettings, MqttProtocol

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`127.0.0.0/8, ::1` as networks (a bare address is a network of one); ValueError when one is not."""
    networks = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an address or a network such as 127.0.0.0/8") from None
    return tuple(networks)


class NotifySettings(CoreSettings):
    """Deliverer settings, from `LIVINGLAB_*` environment variables."""

    notify_worker_id: str = Field(
        default="livinglab-notify-1",
        min_length=1,
        max_length=64,
        description="Names this deliverer in the deliveries it holds; unique per deliverer. A deliverer restarted "
        "under the same id takes back at once what it held.",
    )
    notify_concurrency: int = Field(default=32, ge=1, le=1000, description="Deliveries attempted at once.")
    notify_poll_interval_s: float = Field(
        default=5.0, gt=0, description="The outbox is looked at this often even when no NOTIFY arrives."
    )
    notify_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A claimed delivery is held this long; a deliverer that dies hands it to the others after it "
        "(keep it above the webhook and SMTP timeouts).",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="A webhook receiver that has not answered in this time has failed the attempt."
    )
    retry_first_s: float = Field(default=5.0, gt=0, le=10, description="Delay before the first retry (at most 10 s).")
    retry_max_s: float = Field(default=600.0, gt=0, le=600, description="Longest delay between retries (doubling).")
    retry_for_s: float = Field(
        default=86_400.0,
        ge=86_400.0,
        description="A delivery that still fails this long after its event is `failed` (at least 24 hours).",
    )
    notify_allowed_networks: str = Field(
        default="",
        description="Comma-separated addresses or networks (`127.0.0.0/8, ::1`) webhooks may reach; empty: "
        "any. Checked on the addresses a receiver's name resolves to, and the request goes to the address checked.",
    )
    mqtt_protocol: MqttProtocol = "auto"
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server of email channels (unset: email deliveries wait and retry, `last_error` says why).",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_user: str | None = Field(default=None, description="SMTP user name (unset: no login).")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(default="livinglab@localhost", description="Sender address of notification emails.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of each SMTP conversation step.")

    @field_validator("notify_allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def allowed_networks(self) -> tuple[Network, ...]:
        """The networks webhooks may reach; empty: any."""
        return parse_networks(self.notify_allowed_networks)

    def retry_delay_s(self, attempts: int) -> float:
        """Delay after the `attempts`-th failed attempt: the first delay, doubling, up to the longest."""
        return float(min(self.retry_max_s, self.retry_first_s * 2 ** max(0, min(attempts - 1, 30))))
