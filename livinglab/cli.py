"""The `livinglab` command line. Settings are read here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from livinglab.brokeraccess.command import BrokerAdminSettings, add_mqtt_commands
from livinglab.errors import ConfigurationError, LivinglabError
from livinglab.logs import configure_logging
from livinglab.settings import CoreSettings

RoleSettings = TypeVar("RoleSettings", bound=CoreSettings)
Result = TypeVar("Result")


def _on_signals(stop: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_up(args: argparse.Namespace) -> int:
    from api import ApiSettings
    from livinglab.runtime import Platform

    settings = CoreSettings()
    configure_logging(settings.log_level, "up")
    api = ApiSettings()
    platform = Platform(
        settings,
        simulate=args.simulate,
        scenario=args.scenario,
        api_port=args.port if args.port is not None else api.api_port,
        # A port asked for (--port or LIVINGLAB_API_PORT) is used or refused; only the default may move.
        api_port_fixed=args.port is not None or "api_port" in api.model_fields_set,
        public_read=args.public_read,
    )
    _on_signals(platform.stop)
    return platform.run()


def cmd_migrate(args: argparse.Namespace) -> int:
    from livinglab.runtime import resolve_database_url
    from livinglab.storage import connect, migrate
    from livinglab.storage.policies import StoragePolicies, apply_policies

    settings = CoreSettings()
    configure_logging(settings.log_level, "migrate")
    url, embedded = resolve_database_url(settings)
    try:
        applied = migrate(url, timescaledb=settings.timescaledb, chunk_interval=settings.chunk_interval)
        with connect(url) as conn:
            changes = apply_policies(conn, StoragePolicies.from_settings(settings))
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"applied migrations: {', '.join(map(str, applied)) or 'none (up to date)'}", file=sys.stderr)
    for change in changes:
        print(f"storage policy: {change}", file=sys.stderr)
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from livinglab.storage.retention import RetentionJob, RetentionSettings

    settings = RetentionSettings()
    configure_logging(settings.log_level, "retention")
    job = RetentionJob(settings)
    if args.once:
        results = job.run_once()
        if results is None:
            print("another retention pass is running", file=sys.stderr)
            return 1
        for result in results:
            print(f"{result.table}: deleted {result.rows_deleted} rows older than {result.cutoff.isoformat()}")
        return 0
    _on_signals(job.stop)
    job.run()
    return 0


def _keys_command(action: Callable[[Any], str]) -> int:
    """Run `action(conn)` on the configured database in one transaction and print what it returns."""
    settings = CoreSettings()
    configure_logging("WARNING", "keys")
    print(_with_database(action, settings), flush=True)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from livinglab.storage.keys import Scope, create_key, normalize_cities

    try:
        cities = normalize_cities(args.city or ())
    except ValueError as exc:
        raise ConfigurationError(f"--city: {exc}") from None
    return _keys_command(lambda conn: create_key(conn, Scope(args.scope), name=args.name or "", cities=cities))


def cmd_keys_list(args: argparse.Namespace) -> int:
    from livinglab.storage.keys import list_keys

    def listing(conn: Any) -> str:
        lines = ["key_id\tprefix\tscope\tcities\tname\tcreated_at"]
        for k in list_keys(conn):
            cities = ",".join(k.cities) or "*"
            lines.append(f"{k.key_id}\t{k.prefix}\t{k.scope.value}\t{cities}\t{k.name}\t{k.created_at.isoformat()}")
        return "\n".join(lines)

    return _keys_command(listing)


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from livinglab.storage.keys import revoke_key

    def revoke(conn: Any) -> str:
        if not revoke_key(conn, args.key_id):
            raise ConfigurationError(f"no live key with id {args.key_id}")
        return f"revoked key {args.key_id}"

    return _keys_command(revoke)


class _ProgressBar:
    """`[#####.....] rows/total  rate` on standard error, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        import time

        self._clock = time.monotonic
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self._start = self._drawn = self._clock()

    def __call__(self, rows: int, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        share = min(rows / self.total, 1.0) if self.total else 1.0
        filled = int(share * self.width)
        rate = rows / max(now - self._start, 1e-9)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {rows:,}/{self.total:,} rows {share:6.1%} {rate:,.0f} rows/s")
        self.stream.flush()

    def done(self, rows: int) -> None:
        self(rows, force=True)
        self.stream.write("\n")
        self.stream.flush()


def cmd_export(args: argparse.Namespace) -> int:
    from datetime import UTC, timedelta

    from livinglab.domain import QUANTITIES, Window
    from livinglab.export import ExportFormat, ExportRequest, count_rows, final_before, write_export

    settings = CoreSettings()
    configure_logging("WARNING", "export")
    window = Window(args.window) if args.window else None
    if args.what == "aggregates" and window is None:
        raise ConfigurationError("--window is required for aggregates (1m, 1h or 1d)")
    if args.quantity is not None and args.quantity not in QUANTITIES:
        raise ConfigurationError(f"unknown quantity {args.quantity!r} (known: {', '.join(QUANTITIES)})")
    now = datetime.now(UTC)
    end = args.end or now
    start = args.start or end - timedelta(hours=24)
    if start > end:
        raise ConfigurationError("--start must not be after --end")
    fmt = ExportFormat(args.format or ("parquet" if str(args.output).endswith(".parquet") else "csv"))
    request = ExportRequest(
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
        window=window,
        cities=[args.city] if args.city else None,
        district=args.district,
        sensor_id=args.sensor_id,
        quantity=QUANTITIES[args.quantity].code if args.quantity else None,
        final_before=final_before(window, settings.allowed_lateness_s, now) if window else None,
    )

    def export(conn: Any) -> int:
        bar = _ProgressBar(count_rows(conn, request)) if not args.quiet else None
        conn.rollback()
        with open(args.output, "wb") as out:
            rows = write_export(conn, request, fmt, out, bar)
        if bar is not None:
            bar.done(rows)
        return rows

    rows = _with_database(export, settings, application_name="livinglab-export")
    print(f"exported {rows} rows to {args.output}", file=sys.stderr)
    return 0


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """Command-line options that were given, as settings overrides (they win over LIVINGLAB_* variables)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def cmd_sensors_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from livinglab.sensor_files import read_sensor_file
    from livinglab.storage.registry import upsert_sensors

    settings = CoreSettings()
    configure_logging("WARNING", "sensors")
    specs = read_sensor_file(Path(args.file))  # SensorFileError is a LivinglabError: main() reports it
    if args.dry_run:
        print(f"{len(specs)} sensors valid (dry run: nothing written)", file=sys.stderr)
        return 0
    written = _with_database(lambda conn: upsert_sensors(conn, specs), settings)
    print(f"imported {written} sensors", file=sys.stderr)
    return 0


def _with_database(
    action: Callable[[Any], Result], settings: CoreSettings | None = None, *, application_name: str = "livinglab"
) -> Result:
    """Run `action(conn)` on the configured (or embedded) database, committing when it returns."""
    from livinglab.runtime import resolve_database_url
    from livinglab.storage import check_schema, connect

    url, embedded = resolve_database_url(settings or CoreSettings())
    try:
        with connect(url, application_name=application_name) as conn:
            check_schema(conn)
            result = action(conn)
            conn.commit()
    finally:
        if embedded is not None:
            embedded.stop()
    return result


def cmd_alarm_rules_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from livinglab.alarms.rule_files import RuleFileError, read_rule_file
    from livinglab.alarms.rules import RuleError
    from livinglab.alarms.store import import_rules

    configure_logging("WARNING", "alarms")
    specs = read_rule_file(Path(args.file))  # RuleFileError is a LivinglabError: main() reports it
    if args.dry_run:
        print(f"{len(specs)} rules valid (dry run: nothing written)", file=sys.stderr)
        return 0

    def write(conn: Any) -> int:
        try:
            stored = import_rules(conn, specs)
        except RuleError as exc:
            raise RuleFileError(f"invalid rules, nothing imported:\n  {exc.message}") from None
        print(f"imported {len(stored)} rules", file=sys.stderr)
        return 0

    return _with_database(write)


def cmd_alarms_list(args: argparse.Namespace) -> int:
    from psycopg.rows import dict_row

    from livinglab.alarms.episodes import ALARM_COLUMNS, ALARM_FROM, alarm_object

    configure_logging("WARNING", "alarms")
    query = (
        f"SELECT {ALARM_COLUMNS} FROM {ALARM_FROM}"
        " WHERE (%(state)s::text IS NULL OR a.state = %(state)s OR (%(state)s = 'open' AND a.state <> 'cleared'))"
        " AND (%(city)s::text IS NULL OR a.city = %(city)s)"
        " ORDER BY a.raised_at DESC, a.alarm_id DESC LIMIT %(limit)s"
    )

    def listing(conn: Any) -> int:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, {"state": args.state, "city": args.city, "limit": args.limit}).fetchall()
        if args.json:
            for row in rows:
                print(json.dumps(alarm_object(row)))
            return 0
        print("alarm_id\tstate\tseverity\trule_id\tsensor_id\tcity\traised_at\tvalue\tlast_value")
        for row in rows:
            alarm = alarm_object(row)
            print(
                "\t".join(
                    str(alarm[k])
                    for k in ("alarm_id", "state", "severity", "rule_id", "sensor_id", "city", "raised_at", "value")
                )
                + f"\t{alarm['last_value']}"
            )
        return 0

    return _with_database(listing)


class _Role(Protocol):
    """A long-running role: `run` blocks until `stop` is called (here, by SIGINT or SIGTERM)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def _run_role(settings: RoleSettings, name: str, role: Callable[[RoleSettings], _Role]) -> int:
    configure_logging(settings.log_level, name)
    service = role(settings)
    _on_signals(service.stop)
    service.run()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest import Ingester, IngestSettings

    return _run_role(IngestSettings(**_overrides(args, "client_id", "shared_group", "health_port")), "ingest", Ingester)


def cmd_process(args: argparse.Namespace) -> int:
    from processing import Processor, ProcessorSettings

    return _run_role(ProcessorSettings(**_overrides(args, "worker_id")), "process", Processor)


def cmd_notify(args: argparse.Namespace) -> int:
    from notify import Deliverer, NotifySettings

    return _run_role(NotifySettings(**_overrides(args, "notify_worker_id")), "notify", Deliverer)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api import ApiSettings, create_app
    from api.server import freeze_startup_objects, server_config

    overrides = _overrides(args, "api_host")
    if args.port is not None:
        overrides["api_port"] = args.port
    settings = ApiSettings(**overrides)
    configure_logging(settings.log_level, "api")
    server = uvicorn.Server(server_config(create_app(settings), settings))
    if settings.gc_freeze:
        freeze_startup_objects()
    server.run()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators import SimulatorSettings
    from simulators.command import SimulateRequest, run_simulate
    from simulators.run import Mode

    settings = SimulatorSettings(**_overrides(args, "seed"))
    configure_logging(settings.log_level, "simulate")
    request = SimulateRequest(
        scenario=args.scenario,
        mode=Mode(args.mode),
        speed=args.speed,
        days=args.days,
        end=args.end,
        follow=args.follow,
        faults=args.faults,
        qos=args.qos,
        register=args.register,
        ground_truth=args.ground_truth,
        print_registry=args.print_registry,
        print_districts=args.print_districts,
        progress=not args.no_progress,
        processes=args.processes,
        pack=args.pack,
        messages=args.messages,
        duration_s=args.duration,
        payload=args.payload,
        format=args.format,
    )
    return run_simulate(request, settings, _on_signals)


def settings_classes() -> list[tuple[str, type[CoreSettings]]]:
    """Every deployable's settings class, for documentation."""
    from api import ApiSettings
    from ingest import IngestSettings
    from livinglab.storage.retention import RetentionSettings
    from notify import NotifySettings
    from processing import ProcessorSettings
    from simulators import SimulatorSettings

    return [
        ("all roles", CoreSettings),
        ("ingest", IngestSettings),
        ("process", ProcessorSettings),
        ("api", ApiSettings),
        ("simulate", SimulatorSettings),
        ("retention", RetentionSettings),
        ("notify", NotifySettings),
        ("mqtt", BrokerAdminSettings),
    ]


def settings_table() -> str:
    """A Markdown table of every LIVINGLAB_* variable: who reads it, its default and what it does."""
    lines = ["| variable | read by | default | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    for role, cls in settings_classes():
        for name, info in cls.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            if info.default_factory is not None:
                default = "(see meaning)"
            elif info.default is None:
                default = "unset"
            else:
                default = f"`{getattr(info.default, 'value', info.default)}`"
            meaning = (info.description or "").replace("|", "\\|")
            lines.append(f"| `LIVINGLAB_{name.upper()}` | {role} | {default} | {meaning} |")
    return "\n".join(lines)


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livinglab",
        description="An event-driven sensor platform for a city living lab. Settings come from LIVINGLAB_* "
        "environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole platform on this machine (embedded database and broker by default)")
    up.add_argument("--simulate", action="store_true", help="also run a simulated city")
    up.add_argument("--scenario", default="demo", help="scenario for --simulate: a shipped name or a YAML path")
    up.add_argument(
        "--port", type=int, default=None, help="API port (default: LIVINGLAB_API_PORT, else 8000 or a free one)"
    )
    up.add_argument("--public-read", action="store_true", help="serve read endpoints without an API key")
    up.set_defaults(func=cmd_up)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate)
    sub.add_parser("settings", help="print every LIVINGLAB_* setting as a Markdown table").set_defaults(
        func=cmd_settings
    )

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key and print it (shown only once)")
    create.add_argument("--scope", required=True, choices=["read", "sensors:write", "admin"])
    create.add_argument("--name", default="", help="a label to recognise the key by")
    create.add_argument(
        "--city",
        action="append",
        metavar="CITY",
        help="limit the key to this city (repeat for several); without it the key sees every city",
    )
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list live keys (id, first characters, scope, cities, name)")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (it stops working within LIVINGLAB_KEY_CACHE_S)")
    revoke.add_argument("key_id", type=int, help="the key's id, from `livinglab keys list`")
    revoke.set_defaults(func=cmd_keys_revoke)

    sensors = sub.add_parser("sensors", help="the sensor registry").add_subparsers(
        dest="sensors_command", required=True
    )
    imp = sensors.add_parser(
        "import", help="register or update sensors from a YAML or CSV file (all or nothing, validated first)"
    )
    imp.add_argument("file", help="a .yaml/.yml file (a list of sensors, or a mapping with `sensors:`) or a .csv file")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    imp.set_defaults(func=cmd_sensors_import)

    alarms = sub.add_parser("alarms", help="alarm rules and alarms").add_subparsers(
        dest="alarms_command", required=True
    )
    rules = alarms.add_parser("rules", help="alarm rules").add_subparsers(dest="rules_command", required=True)
    rules_import = rules.add_parser(
        "import", help="create or replace alarm rules from a YAML file (all or nothing, validated first)"
    )
    rules_import.add_argument("file", help="a .yaml/.yml file: a list of rules, or a mapping with `rules:`")
    rules_import.add_argument("--dry-run", action="store_true", help="validate only")
    rules_import.set_defaults(func=cmd_alarm_rules_import)
    alarm_list = alarms.add_parser("list", help="list alarms, newest first (tab-separated, or JSON lines)")
    alarm_list.add_argument(
        "--state", choices=("active", "acknowledged", "cleared", "open"), help="only alarms in this state"
    )
    alarm_list.add_argument("--city", help="only alarms of this city")
    alarm_list.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    alarm_list.add_argument("--json", action="store_true", help="one JSON alarm object per line")
    alarm_list.set_defaults(func=cmd_alarms_list)

    ingest = sub.add_parser("ingest", help="run an ingester (run several with one --shared-group)")
    ingest.add_argument("--client-id", help="fixed MQTT client id, unique per ingester (LIVINGLAB_CLIENT_ID)")
    ingest.add_argument("--shared-group", help="MQTT 5 shared subscription group (LIVINGLAB_SHARED_GROUP)")
    ingest.add_argument("--health-port", type=int, help="serve /metrics and /health here (LIVINGLAB_HEALTH_PORT)")
    ingest.set_defaults(func=cmd_ingest)
    process = sub.add_parser("process", help="run a processor (any number share the work)")
    process.add_argument("--worker-id", help="names this processor in claimed work (LIVINGLAB_WORKER_ID)")
    process.set_defaults(func=cmd_process)
    notify = sub.add_parser("notify", help="run a deliverer of alarm notifications (any number share the outbox)")
    notify.add_argument(
        "--worker-id", dest="notify_worker_id", help="unique per deliverer (LIVINGLAB_NOTIFY_WORKER_ID)"
    )
    notify.set_defaults(func=cmd_notify)
    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", dest="api_host", help="address to listen on (LIVINGLAB_API_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (default: LIVINGLAB_API_PORT or 8000)")
    api.set_defaults(func=cmd_api)
    retention = sub.add_parser("retention", help="delete data older than its retention interval, periodically")
    retention.add_argument("--once", action="store_true", help="run one pass, print what it deleted and exit")
    retention.set_defaults(func=cmd_retention)

    export = sub.add_parser(
        "export", help="export readings or aggregates to a CSV or Parquet file (as GET /v1/export/...)"
    )
    export.add_argument("what", choices=["readings", "aggregates"])
    export.add_argument("output", help="the file to write (.parquet: Parquet unless --format says otherwise)")
    export.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name, else csv")
    export.add_argument("--window", choices=["1m", "1h", "1d"], help="for aggregates: the window width")
    export.add_argument("--city", help="only sensors of this city")
    export.add_argument("--district", help="only sensors of this district")
    export.add_argument("--sensor-id", dest="sensor_id", help="only this sensor")
    export.add_argument("--quantity", help="only this quantity")
    export.add_argument("--start", type=_iso_time, help="start, inclusive (ISO 8601 with offset; default: end - 24h)")
    export.add_argument("--end", type=_iso_time, help="end, exclusive (ISO 8601 with offset; default: now)")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=cmd_export)

    _add_simulate(sub)
    add_mqtt_commands(sub)
    return parser


def _iso_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. 2026-11-28T00:00:00+07:00)")
    return parsed


def _add_simulate(sub: Any) -> None:
    sim = sub.add_parser(
        "simulate",
        help="publish a simulated city over MQTT (real time, accelerated, backfill or load)",
        description="Play a city scenario over MQTT. Messages are deterministic for the seed; faults are injected at "
        "configurable rates and every one is counted in the summary (and in the ground truth, if asked for).",
    )
    sim.add_argument("--scenario", default="demo", help="a shipped scenario (demo, large, two-cities) or a YAML path")
    sim.add_argument(
        "--mode",
        choices=["realtime", "accelerated", "backfill", "load"],
        default="realtime",
        help="realtime: from now on; accelerated: a past period on a faster clock; backfill: a past period as fast "
        "as the broker takes it; load: maximum rate from several processes (default realtime)",
    )
    sim.add_argument("--speed", type=float, default=60.0, help="accelerated: simulated seconds per second (60)")
    sim.add_argument("--days", type=float, default=1.0, help="accelerated, backfill: days of data (1)")
    sim.add_argument("--end", type=_iso_time, help="accelerated, backfill: end of the period (default now)")
    sim.add_argument("--follow", action="store_true", help="after accelerated or backfill, continue in real time")
    sim.add_argument(
        "--faults",
        default="default",
        help="fault rates: off, default, or name=rate,... on top of the defaults ('off,malformed=0.05' on top of "
        "none); names: gap, outage, burst, clock_skew, late, out_of_order, duplicate, conflicting_duplicate, "
        "malformed, unknown_sensor; for LoRaWAN sensors also no_codec, unknown_dev_eui, extra_members, fcnt_gap "
        "(the load mode sends clean readings)",
    )
    sim.add_argument(
        "--format",
        choices=["direct", "chirpstack", "tts"],
        default="direct",
        help="direct: devices publish to the platform's topics (CONTRACT.md section 1); chirpstack, tts: every "
        "sensor is a LoRaWAN device whose readings arrive as that network server's uplinks (section 6; with "
        "--register or --print-registry the sensors get their DevEUIs)",
    )
    sim.add_argument("--seed", type=int, help="random seed (LIVINGLAB_SEED, default 1)")
    sim.add_argument("--qos", type=int, choices=[0, 1], default=1, help="MQTT QoS of published messages (1)")
    sim.add_argument("--register", action="store_true", help="register the scenario's sensors first")
    sim.add_argument("--ground-truth", type=Path, help="write what the platform should compute into this directory")
    sim.add_argument(
        "--print-registry",
        choices=["yaml", "json", "csv"],
        help="print the scenario's sensor registry file and exit",
    )
    sim.add_argument("--print-districts", action="store_true", help="print district outlines as GeoJSON and exit")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    load = sim.add_argument_group("load mode")
    load.add_argument("--processes", type=int, default=2, help="publisher processes (2)")
    load.add_argument("--pack", type=int, default=1, help="readings per message: 1 single readings, K SenML packs")
    load.add_argument("--messages", type=int, default=200_000, help="messages to send in total (200000)")
    load.add_argument("--duration", type=float, help="stop after this many seconds")
    load.add_argument("--payload", choices=["senml", "json"], default="senml", help="payload form (senml)")
    sim.set_defaults(func=cmd_simulate)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except LivinglabError as exc:
        print(f"livinglab: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
