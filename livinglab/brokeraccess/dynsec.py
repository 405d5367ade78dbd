"""Broker credentials in Mosquitto's dynamic security plugin: who may publish and subscribe where.

Every device, gateway and the plugin's administrator is a *client* of the plugin (user name, salted password hash,
optionally a fixed MQTT client id) with *roles*, and a role is a list of ACL entries. The platform issues:

- a **device**: user name and client id = its sensor id (the client id is bound: the credentials work with no other
  id, so a device can never take over another client's session, an ingester's included), and a role of its own,
  `livinglab-device-<sensor_id>`, that may publish only to `{prefix}/{city}/{kind}/{sensor_id}` and subscribe only
  to that topic's `/errors`;
- a **city gateway**: any user name, bound to its client id, with the role `livinglab-gateway-<city>`, which may
  publish to every device topic of that city (`{prefix}/{city}/+/+`) and subscribe to their `/errors` topics.

Nothing else is allowed: the plugin's defaults (written by `DynsecDocument.new`) deny every publish and every
subscription that no role grants, so no credential of a device or gateway can subscribe to `#`, to another
device's topics or to the ingesters' shared subscription (`$share/...`).

Passwords are stored as the plugin stores them: PBKDF2-HMAC-SHA512 over a 12-byte random salt, 101 iterations,
both base64. Mosquitto's own password files (`mosquitto_passwd`, `$7$` lines) use the same hash, so devices keep
their passwords when they are moved from a password file into the plugin (`livinglab mqtt migrate`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livinglab.domain import IDENTIFIER_RE, Kind
from livinglab.errors import LivinglabError

ITERATIONS = 101
_SALT_BYTES = 12
ADMIN_ROLE = "admin"
DEVICE_ROLE_PREFIX = "livinglab-device-"
GATEWAY_ROLE_PREFIX = "livinglab-gateway-"


class BrokerAccessError(LivinglabError):
    """A credential could not be issued, changed or read (the broker refused, or the input is not valid)."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted PBKDF2-HMAC-SHA512 hash, as the plugin stores it."""

    salt_b64: str
    hash_b64: str
    iterations: int = ITERATIONS

    @classmethod
    def of(cls, password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> PasswordHash:
        salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
        return cls(base64.b64encode(salt).decode(), base64.b64encode(digest).decode(), iterations)

    def matches(self, password: str) -> bool:
        other = PasswordHash.of(password, salt=base64.b64decode(self.salt_b64), iterations=self.iterations)
        return secrets.compare_digest(other.hash_b64, self.hash_b64)


def new_password() -> str:
    """A random password of 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def check_identifier(what: str, value: str) -> str:
    if not IDENTIFIER_RE.match(value):
        raise BrokerAccessError(f"{what} {value!r} does not match [a-z0-9][a-z0-9_-]{{0,63}}")
    return value


def acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def device_role(prefix: str, city: str, kind: Kind, sensor_id: str) -> dict[str, Any]:
    """The role of one device: its own topic to publish, its own `/errors` to subscribe to."""
    topic = f"{prefix}/{check_identifier('city', city)}/{kind.value}/{check_identifier('sensor id', sensor_id)}"
    return {
        "rolename": DEVICE_ROLE_PREFIX + sensor_id,
        "textname": f"livinglab device {sensor_id} ({city}, {kind.value})",
        "acls": [acl("publishClientSend", topic), acl("subscribeLiteral", f"{topic}/errors")],
    }


def gateway_role(prefix: str, city: str) -> dict[str, Any]:
    """The role of a city's gateways: every device topic of the city, and their `/errors` topics."""
    devices = f"{prefix}/{check_identifier('city', city)}/+/+"
    return {
        "rolename": GATEWAY_ROLE_PREFIX + city,
        "textname": f"livinglab gateway of city {city}",
        "acls": [acl("publishClientSend", devices), acl("subscribePattern", f"{devices}/errors")],
    }


#: What the plugin allows when no role says otherwise: no publishing, no subscribing (receiving what a granted
#: subscription delivers, and unsubscribing, are harmless).
DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": True, "subscribe": False, "unsubscribe": True}

#: The administrator's role, as `mosquitto_ctrl dynsec init` writes it: the plugin's control topics only.
_ADMIN_ACLS = [
    acl("publishClientSend", "$CONTROL/dynamic-security/#"),
    acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
    acl("subscribePattern", "$CONTROL/dynamic-security/#"),
]


class DynsecDocument:
    """The plugin's configuration file, edited while the broker is stopped (it reads the file at start and writes
    it after every change made through its control topic, so edits made meanwhile would be lost)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def new(cls, admin_user: str, admin_password: str) -> DynsecDocument:
        admin = {
            "username": admin_user,
            "textname": "livinglab broker administrator",
            "roles": [{"rolename": ADMIN_ROLE}],
        }
        document = cls(
            {
                "clients": [],
                "groups": [],
                "roles": [{"rolename": ADMIN_ROLE, "acls": list(_ADMIN_ACLS)}],
                "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
            }
        )
        document.add_client(admin, PasswordHash.of(admin_password))
        return document

    @classmethod
    def load(cls, path: Path) -> DynsecDocument:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise BrokerAccessError(f"cannot read the dynamic security file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise BrokerAccessError(f"{path} is not a dynamic security file")
        return cls(data)

    def save(self, path: Path) -> None:
        """Write the file atomically, readable by its owner only (it holds password hashes)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.data, out, indent=2)
            out.write("\n")
        tmp.replace(path)

    @property
    def usernames(self) -> set[str]:
        return {c["username"] for c in self.data.get("clients", [])}

    def add_role(self, role: dict[str, Any]) -> None:
        roles = [r for r in self.data.setdefault("roles", []) if r["rolename"] != role["rolename"]]
        self.data["roles"] = [*roles, role]

    def add_client(self, client: dict[str, Any], password: PasswordHash) -> None:
        if client["username"] in self.usernames:
            raise BrokerAccessError(f"the file already has a client {client['username']!r}")
        entry = {
            **client,
            "password": password.hash_b64,
            "salt": password.salt_b64,
            "iterations": password.iterations,
        }
        self.data.setdefault("clients", []).append(entry)
