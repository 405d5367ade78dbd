"""Issuing, changing and listing device and gateway credentials, on a running broker or in the plugin's file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livinglab.brokeraccess.control import DynsecControl
from livinglab.brokeraccess.dynsec import (
    DEVICE_ROLE_PREFIX,
    BrokerAccessError,
    DynsecDocument,
    PasswordHash,
    check_identifier,
    device_role,
    gateway_role,
)
from livinglab.domain import Kind

#: Accounts of the platform's own services: they belong to the services listener's password file, not here.
SERVICE_ACCOUNTS = frozenset({"ingest", "simulator"})


def _check_username(name: str) -> str:
    check_identifier("user name", name)
    if name in SERVICE_ACCOUNTS:
        raise BrokerAccessError(f"{name!r} is a service account of the platform, not a device or gateway")
    return name


def _create_device(
    control: DynsecControl, role: dict[str, Any], client: dict[str, Any], password: str, *, replace: bool
) -> None:
    username = client["username"]
    if control.exists("getClient", username=username):
        if not replace:
            raise BrokerAccessError(
                f"the broker already has a client {username!r} (replace it with --replace, or change its password)"
            )
        control.run("deleteClient", username=username)
    if control.exists("getRole", rolename=role["rolename"]):
        control.run("deleteRole", rolename=role["rolename"])
    control.run("createRole", **role)
    control.run("createClient", **client, password=password, roles=[{"rolename": role["rolename"]}])


def issue_device(
    control: DynsecControl,
    *,
    prefix: str,
    sensor_id: str,
    city: str,
    kind: Kind,
    password: str,
    client_id: str | None = None,
    replace: bool = False,
) -> None:
    """A device's credentials, limited to its own topic (see `livinglab.brokeraccess.dynsec`)."""
    _check_username(sensor_id)
    role = device_role(prefix, city, kind, sensor_id)
    client = {"username": sensor_id, "clientid": client_id or sensor_id, "textname": role["textname"]}
    _create_device(control, role, client, password, replace=replace)


def issue_gateway(
    control: DynsecControl,
    *,
    prefix: str,
    name: str,
    city: str,
    password: str,
    client_id: str | None = None,
    replace: bool = False,
) -> None:
    """A gateway's credentials, limited to the device topics of one city. The city's gateway role is shared by
    all its gateways and (re)written with the same entries each time."""
    _check_username(name)
    role = gateway_role(prefix, city)
    if not control.exists("getRole", rolename=role["rolename"]):  # its entries are the same for every gateway
        control.run("createRole", **role)
    if control.exists("getClient", username=name):
        if not replace:
            raise BrokerAccessError(f"the broker already has a client {name!r} (replace it with --replace)")
        control.run("deleteClient", username=name)
    control.run(
        "createClient",
        username=name,
        clientid=client_id or name,
        textname=f"livinglab gateway {name} of city {city}",
        password=password,
        roles=[{"rolename": role["rolename"]}],
    )


def remove_client(control: DynsecControl, username: str) -> None:
    """Remove a device or gateway (and a device's own role); its connection, if any, is closed by the broker."""
    control.run("deleteClient", username=username)
    role = DEVICE_ROLE_PREFIX + username
    if control.exists("getRole", rolename=role):
        control.run("deleteRole", rolename=role)


def set_password(control: DynsecControl, username: str, password: str) -> None:
    control.run("setClientPassword", username=username, password=password)


def describe_clients(control: DynsecControl) -> list[str]:
    """One line per client: user name, bound client id, and what its roles allow."""
    roles = {r["rolename"]: r for r in control.run("listRoles", verbose=True).get("roles", [])}
    lines = []
    for client in sorted(control.run("listClients", verbose=True).get("clients", []), key=lambda c: c["username"]):
        grants = []
        for granted in client.get("roles", []):
            for entry in roles.get(granted["rolename"], {}).get("acls", []):
                if entry.get("allow"):
                    grants.append(f"{entry['acltype']} {entry['topic']}")
        bound = client.get("clientid") or "(any client id)"
        lines.append(f"{client['username']}\tclient id {bound}\t{'; '.join(grants) or '-'}")
    return lines


@dataclass
class MigrationReport:
    """What `migrate_password_file` did with each user of the old password file."""

    moved: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    unconvertible: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def migrate_password_file(
    passwd: Path, document: DynsecDocument, *, prefix: str, registry: dict[str, tuple[str, Kind]]
) -> MigrationReport:
    """Move the devices of a Mosquitto password file into the plugin's file, keeping their passwords.

    A user whose name is a registered sensor becomes a device limited to its registered city and kind, with its
    `$7$` (PBKDF2-SHA512) hash carried over. Service accounts stay with the services listener; users that are no
    registered sensor, and hashes of the older `$6$` kind, are reported and left out (issue those anew).
    """
    report = MigrationReport()
    try:
        lines = passwd.read_text("utf-8").splitlines()
    except OSError as exc:
        raise BrokerAccessError(f"cannot read the password file {passwd}: {exc}") from exc
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        username, _, stored = line.partition(":")
        if username in SERVICE_ACCOUNTS:
            report.services.append(username)
            continue
        if username in document.usernames:
            report.present.append(username)
            continue
        parts = stored.split("$")
        if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
            report.unconvertible.append(username)
            continue
        if username not in registry:
            report.unregistered.append(username)
            continue
        city, kind = registry[username]
        role = device_role(prefix, city, kind, username)
        document.add_role(role)
        document.add_client(
            {
                "username": username,
                "clientid": username,
                "textname": role["textname"],
                "roles": [{"rolename": role["rolename"]}],
            },
            PasswordHash(salt_b64=parts[3], hash_b64=parts[4], iterations=int(parts[2])),
        )
        report.moved.append(username)
    return report
