"""`livinglab mqtt`: broker credentials for devices and city gateways (Mosquitto's dynamic security plugin).

On a running broker (`LIVINGLAB_MQTT_ADMIN_URL` or `--broker`, the device listener with the administrator's user):
`device add|password|remove`, `gateway add|remove`, `list`. On the plugin's file, with the broker stopped: `init`
(a new file with the administrator) and `migrate` (devices of an old password file, passwords kept). A password
that the command makes up is printed once, alone, on standard output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from livinglab.brokeraccess.control import DynsecControl, connected
from livinglab.brokeraccess.credentials import (
    describe_clients,
    issue_device,
    issue_gateway,
    migrate_password_file,
    remove_client,
    set_password,
)
from livinglab.brokeraccess.dynsec import BrokerAccessError, DynsecDocument, new_password
from livinglab.domain import Kind
from livinglab.logs import configure_logging
from livinglab.settings import CoreSettings, MqttUrl


class BrokerAdminSettings(CoreSettings):
    """Settings of `livinglab mqtt`, from `LIVINGLAB_*` environment variables."""

    mqtt_admin_url: str | None = Field(
        default=None,
        description="`livinglab mqtt`: the broker's device listener with the dynamic security administrator's user, "
        "`mqtt://admin:<password>@host:1883`.",
    )


def _settings(args: argparse.Namespace) -> tuple[BrokerAdminSettings, MqttUrl]:
    settings = BrokerAdminSettings()
    configure_logging("WARNING", "mqtt")
    url = args.broker or settings.mqtt_admin_url
    if not url:
        raise BrokerAccessError("set LIVINGLAB_MQTT_ADMIN_URL or --broker (mqtt://admin:<password>@host:1883)")
    return settings, MqttUrl.parse(url)


def _registry(settings: CoreSettings, sensor_ids: list[str] | None = None) -> dict[str, tuple[str, Kind]]:
    """City and kind of registered sensors (all, or those named)."""
    from livinglab.storage import check_schema, connect

    with connect(settings.require_database_url()) as conn:
        check_schema(conn)
        rows = conn.execute(
            "SELECT sensor_id, city, kind FROM sensors WHERE %(ids)s::text[] IS NULL OR sensor_id = ANY(%(ids)s)",
            {"ids": sensor_ids},
        ).fetchall()
    return {sensor_id: (city, Kind(kind)) for sensor_id, city, kind in rows}


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    return (args.password, False) if args.password else (new_password(), True)


def _with_password(
    args: argparse.Namespace, url: MqttUrl, change: Callable[[DynsecControl, str], object], notice: str = ""
) -> int:
    """Make `change(control, password)` on the broker with `--password` or a new password; then print `notice` on
    standard error and the password, when made up here, alone on standard output."""
    password, made_up = _password(args)
    with connected(url) as control:
        change(control, password)
    if notice:
        print(notice, file=sys.stderr)
    if made_up:
        print(password, flush=True)
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    settings, url = _settings(args)
    if args.city and args.kind:
        city, kind = args.city, Kind(args.kind)
    else:
        found = _registry(settings, [args.sensor_id]).get(args.sensor_id)
        if found is None:
            raise BrokerAccessError(
                f"no sensor {args.sensor_id!r} in the registry: register it, or give --city and --kind"
            )
        city, kind = found
    return _with_password(
        args,
        url,
        lambda control, password: issue_device(
            control,
            prefix=settings.topic_prefix,
            sensor_id=args.sensor_id,
            city=city,
            kind=kind,
            password=password,
            client_id=args.client_id,
            replace=args.replace,
        ),
        f"device {args.sensor_id}: publishes to {settings.topic_prefix}/{city}/{kind.value}/{args.sensor_id}",
    )


def cmd_gateway_add(args: argparse.Namespace) -> int:
    settings, url = _settings(args)
    return _with_password(
        args,
        url,
        lambda control, password: issue_gateway(
            control,
            prefix=settings.topic_prefix,
            name=args.name,
            city=args.city,
            password=password,
            client_id=args.client_id,
            replace=args.replace,
        ),
        f"gateway {args.name}: publishes for every device of {settings.topic_prefix}/{args.city}",
    )


def cmd_password(args: argparse.Namespace) -> int:
    _, url = _settings(args)
    return _with_password(args, url, lambda control, password: set_password(control, args.name, password))


def cmd_remove(args: argparse.Namespace) -> int:
    _, url = _settings(args)
    with connected(url) as control:
        remove_client(control, args.name)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _, url = _settings(args)
    with connected(url) as control:
        for line in describe_clients(control):
            print(line)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists() and not args.force:
        raise BrokerAccessError(f"{path} exists (--force replaces it, and every credential in it)")
    password, made_up = _password(args)
    DynsecDocument.new(args.admin_user, password).save(path)
    if made_up:
        print(password, flush=True)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = CoreSettings()
    configure_logging("WARNING", "mqtt")
    target = Path(args.dynsec)
    document = DynsecDocument.load(target)
    report = migrate_password_file(
        Path(args.passwd), document, prefix=settings.topic_prefix, registry=_registry(settings)
    )
    document.save(target)
    for label, names in (
        ("moved, password kept", report.moved),
        ("already in the file, left as they are", report.present),
        ("service accounts, left to the services listener", report.services),
        ("not registered sensors, left out (register them, then `livinglab mqtt device add`)", report.unregistered),
        ("old $6$ hashes, left out (issue new passwords with `livinglab mqtt device add`)", report.unconvertible),
    ):
        if names:
            print(f"{label}: {', '.join(names)}", file=sys.stderr)
    return 0


def add_mqtt_commands(sub: Any) -> None:
    """Register `livinglab mqtt ...` on the CLI's subcommand parser."""
    mqtt = sub.add_parser(
        "mqtt",
        help="broker credentials for devices and city gateways",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    ).add_subparsers(dest="mqtt_command", required=True, metavar="COMMAND")

    def online(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--broker", help="mqtt://admin:<password>@host:port (default: LIVINGLAB_MQTT_ADMIN_URL)")
        return parser

    def with_password(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--password", help="the password (default: a new random one, printed once)")
        return parser

    device = mqtt.add_parser("device", help="device credentials").add_subparsers(dest="device_command", required=True)
    add = with_password(online(device.add_parser("add", help="issue a device's credentials (prints its password)")))
    add.add_argument("sensor_id")
    add.add_argument("--city", help="its city (default: from the sensor registry)")
    add.add_argument("--kind", choices=[k.value for k in Kind], help="its kind (default: from the sensor registry)")
    add.add_argument("--client-id", help="the MQTT client id it must use (default: the sensor id)")
    add.add_argument("--replace", action="store_true", help="replace existing credentials of this id")
    add.set_defaults(func=cmd_device_add)
    password = with_password(online(device.add_parser("password", help="set a new password (prints it)")))
    password.add_argument("name", metavar="sensor_id")
    password.set_defaults(func=cmd_password)
    remove = online(device.add_parser("remove", help="remove a device's credentials"))
    remove.add_argument("name", metavar="sensor_id")
    remove.set_defaults(func=cmd_remove)

    gateway = mqtt.add_parser("gateway", help="city gateway credentials").add_subparsers(
        dest="gateway_command", required=True
    )
    gw_add = with_password(online(gateway.add_parser("add", help="issue a city gateway's credentials")))
    gw_add.add_argument("name", help="its user name (and, unless --client-id, its client id)")
    gw_add.add_argument("--city", required=True, help="the city whose devices it publishes for")
    gw_add.add_argument("--client-id", help="the MQTT client id it must use (default: the name)")
    gw_add.add_argument("--replace", action="store_true", help="replace existing credentials of this name")
    gw_add.set_defaults(func=cmd_gateway_add)
    gw_password = with_password(online(gateway.add_parser("password", help="set a new password (prints it)")))
    gw_password.add_argument("name")
    gw_password.set_defaults(func=cmd_password)
    gw_remove = online(gateway.add_parser("remove", help="remove a gateway's credentials"))
    gw_remove.add_argument("name")
    gw_remove.set_defaults(func=cmd_remove)

    online(mqtt.add_parser("list", help="every credential and what it may do")).set_defaults(func=cmd_list)

    init = with_password(
        mqtt.add_parser("init", help="write a new plugin file with the administrator (broker stopped)")
    )
    init.add_argument("file", help="the plugin's file (plugin_opt_config_file)")
    init.add_argument("--admin-user", default="admin", help="the administrator's user name (admin)")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=cmd_init)
    migrate = mqtt.add_parser(
        "migrate", help="move the devices of a password file into the plugin's file (broker stopped)"
    )
    migrate.add_argument("--passwd", required=True, help="the old password file (deploy/mosquitto/passwd)")
    migrate.add_argument("--dynsec", required=True, help="the plugin's file, from `livinglab mqtt init`")
    migrate.set_defaults(func=cmd_migrate)
