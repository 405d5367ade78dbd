"""Notification channels and deliveries (CONTRACT.md section 5): what a channel is, how its fields are checked, and
the facts a delivery carries (the signature of a webhook body, the topic of an MQTT message, the text of an email).

The API writes channels with `ChannelSpec`; the deliverer (`notify/`) reads them back with `channel_config`. Alarm
changes queue one row per (event, channel) in `notification_deliveries` and NOTIFY `CHANNEL_DELIVERIES`.

Only this module knows how a channel's fields sit in the `config` column:

    webhook  {"url": ..., "secret": ...}
    mqtt     {"topic": ...}          a template: {city}, {district}, {sensor_id}, {rule_id}, {severity}, {event}
    email    {"to": [...]}
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from livinglab.sensors import Identifier

#: NOTIFY channel: deliveries were queued (payload: empty, or the number of rows).
CHANNEL_DELIVERIES = "livinglab_deliveries"
#: Header of a webhook request: the delivery id, the same on every attempt.
DELIVERY_HEADER = "X-Livinglab-Delivery"
#: Header of a webhook request: `sha256=<hex HMAC-SHA256 of the exact body, keyed with the channel's secret>`.
SIGNATURE_HEADER = "X-Livinglab-Signature"
#: MQTT 5 user property carrying the delivery id.
DELIVERY_PROPERTY = "delivery_id"

CHANNEL_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
ChannelId = Annotated[str, Field(pattern=rf"^{CHANNEL_ID_PATTERN}$", min_length=1, max_length=64)]

MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
MAX_URL_LENGTH = 2048
MAX_TOPIC_LENGTH = 1024
MAX_RECIPIENTS = 20
MAX_CHANNEL_CITIES = 64
#: Placeholders a topic template may use, each filled from the alarm.
TOPIC_FIELDS = frozenset({"city", "district", "sensor_id", "rule_id", "severity", "event"})

_EMAIL_RE = re.compile(r"\A[^@\s<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class ChannelType(enum.StrEnum):
    WEBHOOK = "webhook"
    MQTT = "mqtt"
    EMAIL = "email"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AlarmEvent(enum.StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


#: The fields each type takes besides the common ones (a field of another type is refused, not ignored).
_TYPE_FIELDS = {
    ChannelType.WEBHOOK: frozenset({"url", "secret"}),
    ChannelType.MQTT: frozenset({"topic"}),
    ChannelType.EMAIL: frozenset({"to"}),
}


class ChannelSpec(BaseModel):
    """A channel to create: the common fields, and those of its type (webhook: `url`, `secret`; mqtt: `topic`;
    email: `to`)."""

    model_config = ConfigDict(extra="forbid")

    channel_id: ChannelId | None = Field(default=None, description="Made by the server when absent.")
    type: ChannelType
    name: str = Field(default="", max_length=200, description="A label; default: the channel id.")
    cities: list[Identifier] = Field(
        default_factory=list,
        max_length=MAX_CHANNEL_CITIES,
        description="The cities whose alarms the channel carries and whose keys see it; empty: every city.",
    )
    url: str | None = Field(
        default=None, max_length=MAX_URL_LENGTH, description="webhook: the http:// or https:// address to POST to."
    )
    secret: str | None = Field(
        default=None,
        min_length=MIN_SECRET_LENGTH,
        max_length=MAX_SECRET_LENGTH,
        description="webhook: the HMAC-SHA256 key of `X-Livinglab-Signature`. Never served back; when absent the "
        "server makes one and answers it once, in the creation's answer.",
    )
    topic: str | None = Field(
        default=None,
        max_length=MAX_TOPIC_LENGTH,
        description="mqtt: the topic, a template that may name {city}, {district}, {sensor_id}, {rule_id}, "
        "{severity} and {event}; default `<topic prefix>/{city}/alarms`.",
    )
    to: list[str] | None = Field(
        default=None, max_length=MAX_RECIPIENTS, description="email: the recipients' addresses (one or more)."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_address(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("to"), str):
            return {**data, "to": [data["to"]]}
        return data

    @model_validator(mode="after")
    def _check_type_fields(self) -> Self:
        given = {name for name in ("url", "secret", "topic", "to") if getattr(self, name) is not None}
        foreign = sorted(given - _TYPE_FIELDS[self.type])
        if foreign:
            raise ValueError(f"a {self.type.value} channel takes no {', '.join(foreign)}")
        if self.type is ChannelType.WEBHOOK:
            if self.url is None:
                raise ValueError("a webhook channel needs a url")
            check_webhook_url(self.url)
            if self.secret is not None and _CONTROL_RE.search(self.secret):
                raise ValueError("the secret holds a control character")
        elif self.type is ChannelType.MQTT and self.topic is not None:
            check_topic(self.topic)
        elif self.type is ChannelType.EMAIL:
            if not self.to:
                raise ValueError("an email channel needs `to`: one address or a list of them")
            for address in self.to:
                if not _EMAIL_RE.match(address):
                    raise ValueError(f"{address!r} is not an email address")
        return self

    def config(self, *, topic_prefix: str) -> dict[str, Any]:
        """The `config` column of this channel (a webhook without a secret gets a new one)."""
        if self.type is ChannelType.WEBHOOK:
            return {"url": self.url, "secret": self.secret or new_secret()}
        if self.type is ChannelType.MQTT:
            return {"topic": self.topic or f"{topic_prefix}/{{city}}/alarms"}
        return {"to": list(self.to or ())}


def check_webhook_url(url: str) -> None:
    """ValueError unless `url` is an absolute http(s) address with a host."""
    if _CONTROL_RE.search(url) or " " in url:
        raise ValueError("the url holds a space or a control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the url must start with http:// or https://")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("the url has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("the url has no host")


def check_topic(template: str) -> None:
    """ValueError unless `template` is an MQTT topic to publish to, whose placeholders are all `TOPIC_FIELDS`."""
    if not template or any(c in template for c in "+#\x00"):
        raise ValueError("the topic must be non-empty, without wildcards (+, #) or NUL")
    if template.startswith("$"):
        raise ValueError("topics starting with $ belong to the broker")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        raise ValueError(f"the topic is not a template: {exc}") from None
    for name, spec, conversion in fields:
        if name is None:
            continue
        if name not in TOPIC_FIELDS or spec or conversion:
            raise ValueError(f"the topic may name only {{{'}, {'.join(sorted(TOPIC_FIELDS))}}}, not {{{name}}}")


def _topic_level(value: object) -> str:
    # A value becomes one topic level: separators and wildcards in free text (a district name) would change the
    # topic's shape or make it unpublishable.
    return re.sub(r"[/+#\x00]", "_", str(value)) or "_"


def render_topic(template: str, event: str, alarm: Mapping[str, Any]) -> str:
    """The topic of one alarm event from a channel's template."""
    values = {name: _topic_level(alarm.get(name, "")) for name in TOPIC_FIELDS - {"event"}}
    return template.format(event=_topic_level(event), **values)


def new_secret() -> str:
    """A webhook secret made by the server (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def secret_hint(secret: str) -> str:
    """What is served of a secret: its last four characters."""
    return "…" + secret[-4:]


def url_for_display(url: str) -> str:
    """A webhook url as served: a password in it is masked (query strings are the receiver's own business)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sign(secret: str, body: bytes) -> str:
    """The `X-Livinglab-Signature` value of `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    """Whether `header` is the signature of `body` with `secret` (in constant time)."""
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class MqttConfig:
    topic: str


@dataclass(frozen=True, slots=True)
class EmailConfig:
    to: tuple[str, ...]


ChannelConfig = WebhookConfig | MqttConfig | EmailConfig


class ChannelConfigError(ValueError):
    """A channel's stored `config` does not fit its type (written around the API)."""


def channel_config(channel_type: str, config: Mapping[str, Any], *, topic_prefix: str) -> ChannelConfig:
    """The typed config of a stored channel, checked as on creation (ChannelConfigError when it does not fit)."""
    try:
        kind = ChannelType(channel_type)
        fields = {k: v for k, v in config.items() if k in _TYPE_FIELDS[kind]}
        spec = ChannelSpec.model_validate({"type": kind, **fields})
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ChannelConfigError(f"the channel's config does not fit a {channel_type} channel: {exc}") from None
    if spec.type is ChannelType.WEBHOOK:
        if not spec.secret:
            raise ChannelConfigError("the webhook channel has no secret")
        return WebhookConfig(url=spec.url or "", secret=spec.secret)
    if spec.type is ChannelType.MQTT:
        return MqttConfig(topic=spec.topic or f"{topic_prefix}/{{city}}/alarms")
    return EmailConfig(to=tuple(spec.to or ()))


def email_subject(event: str, alarm: Mapping[str, Any]) -> str:
    """The subject line of a notification email."""
    return (
        f"[livinglab] {alarm.get('severity', '?')} alarm {event}: {alarm.get('rule_id', '?')}"
        f" on {alarm.get('sensor_id', '?')} ({alarm.get('city', '?')})"
    )


#: The alarm fields an email lists, in order, when present.
_EMAIL_FIELDS = (
    "alarm_id",
    "rule_id",
    "sensor_id",
    "city",
    "district",
    "severity",
    "state",
    "value",
    "last_value",
    "raised_at",
    "acknowledged_at",
    "note",
    "cleared_at",
)


def email_text(delivery_id: str, event: str, alarm: Mapping[str, Any]) -> str:
    """The plain-text body of a notification email: the same facts as the JSON of a webhook."""
    lines = [f"Alarm {event}.", ""]
    for name in _EMAIL_FIELDS:
        value = alarm.get(name)
        if value is not None:
            lines.append(f"{name}: {_CONTROL_RE.sub(' ', str(value))}")
    lines += ["", f"delivery_id: {delivery_id}", ""]
    return "\n".join(lines)
