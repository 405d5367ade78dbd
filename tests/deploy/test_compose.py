"""docker-compose.yml is valid against the compose specification schema and wires the platform as documented.

No container engine runs here, so the file is checked statically: the schema is the copy vendored by the
`check-jsonschema` package (compose-spec/compose-spec, Apache-2.0); commands are parsed by the real CLI parser,
LIVINGLAB_* variables are checked against the settings classes, and the shared-subscription group against the ACL.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from livinglab.cli import build_parser, settings_classes

ROOT = Path(__file__).resolve().parent.parent.parent
SECRETS = (
    "POSTGRES_PASSWORD",
    "MQTT_INGEST_PASSWORD",
    "MQTT_SIMULATOR_PASSWORD",
    "MQTT_NOTIFY_PASSWORD",
    "MQTT_ADMIN_PASSWORD",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _by_command(services: dict[str, dict[str, Any]], command: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("command", [None])[0] == command and s.get("build")}


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(schema_text)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(compose: dict[str, Any]) -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["restart"] = ["always"]
    broken["services"]["db"]["healthcheck"]["every"] = "5s"  # not a health check option
    assert len(list(jsonschema.Draft202012Validator(schema).iter_errors(broken))) >= 2


def test_compose_services_run_real_commands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    expected = {"mosquitto", "db", "migrate", "ingest-1", "ingest-2", "process-1", "process-2", "retention", "api"}
    assert expected | {"simulator"} <= set(services)
    for name, service in services.items():
        if "command" in service and service.get("build"):
            parser.parse_args(service["command"])  # exits (fails the test) on an unknown command or option
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    assert services["simulator"]["profiles"] == ["simulate"]
    assert all("profiles" not in services[name] for name in expected)
    for path in ("deploy/mosquitto/mosquitto.conf", "deploy/mosquitto/services.acl", "Dockerfile", ".env.example"):
        assert (ROOT / path).is_file(), path


def test_two_ingesters_share_one_subscription_with_their_own_client_ids(services: dict[str, dict[str, Any]]) -> None:
    ingesters = _by_command(services, "ingest")
    assert len(ingesters) == 2
    client_ids = {s["environment"]["LIVINGLAB_CLIENT_ID"] for s in ingesters.values()}
    groups = {s["environment"]["LIVINGLAB_SHARED_GROUP"] for s in ingesters.values()}
    assert len(client_ids) == 2, "each ingester needs its own fixed client id"
    assert len(groups) == 1, "the ingesters must share one subscription group"
    # The services listener's ACL must let the ingest user read through that group's shared subscription.
    acl = (ROOT / "deploy/mosquitto/services.acl").read_text()
    (group,) = groups
    assert re.search(rf"^topic read \$share/{re.escape(group)}/livinglab/v1/#$", acl, re.MULTILINE), acl
    for service in ingesters.values():
        assert service["environment"]["LIVINGLAB_MQTT_URL"].startswith("mqtt://ingest:")
        assert service["environment"]["LIVINGLAB_MQTT_URL"].endswith("@mosquitto:1884")  # the services listener
        assert "healthcheck" in service


def test_two_processors_with_their_own_worker_ids(services: dict[str, dict[str, Any]]) -> None:
    processors = _by_command(services, "process")
    assert len(processors) == 2
    assert len({s["environment"]["LIVINGLAB_WORKER_ID"] for s in processors.values()}) == 2


def test_restart_policies_health_checks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        one_shot = name in ("migrate", "mosquitto-init")
        assert service["restart"] == ("no" if one_shot else "unless-stopped"), name
    for name in ("mosquitto", "db", "api", "ingest-1", "ingest-2"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name, service in services.items():
        if service.get("build") and name != "migrate":
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["db"]["volumes"] == ["db-data:/var/lib/postgresql/data"]
    assert services["migrate"]["environment"]["LIVINGLAB_TIMESCALEDB"] == "require"


def test_every_livinglab_variable_is_a_real_setting(services: dict[str, dict[str, Any]]) -> None:
    known = {f"LIVINGLAB_{name.upper()}" for _, cls in settings_classes() for name in cls.model_fields}
    used: set[str] = set()
    for service in services.values():
        used |= {k for k in service.get("environment", {}) if k.startswith("LIVINGLAB_")}
    example = (ROOT / ".env.example").read_text()
    used |= set(re.findall(r"^(LIVINGLAB_[A-Z0-9_]+)=", example, re.MULTILINE))
    assert used - known == set()


def test_compose_has_no_default_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text
        assert f"${{{secret}:-" not in text
        assert f"${{{secret}-" not in text
        # The example leaves every secret empty, so a copied but unedited .env fails loudly.
        assert re.search(rf"^{secret}=$", example, re.MULTILINE), secret
    # Only tuning settings have defaults.
    defaulted = re.findall(r"\$\{([A-Z0-9_]+)(?::-|-)", text)
    assert defaulted
    assert [name for name in defaulted if not name.startswith("LIVINGLAB_")] == []
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored
    assert "deploy/mosquitto/passwd" in ignored


def test_the_image_contains_every_package(services: dict[str, dict[str, Any]]) -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "packages"
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert 'ENTRYPOINT ["livinglab"]' in dockerfile


def test_the_operations_guide_names_real_settings_and_commands() -> None:
    guide = (ROOT / "docs/operations.md").read_text()
    known = {f"LIVINGLAB_{name.upper()}" for _, cls in settings_classes() for name in cls.model_fields}
    named = set(re.findall(r"LIVINGLAB_[A-Z0-9_]*[A-Z0-9]\b(?!_\*)", guide))
    assert named - known == set()
    parser = build_parser()
    for command in re.findall(r"`livinglab ([a-z]+(?: [a-z]+)*)[^`]*`", guide):
        words = command.split()
        if words[0] == "keys":
            words = ["keys", "create", "--scope", "read"]
        elif words[0] == "mqtt":  # a command path such as `mqtt device add`: each word must be a subcommand
            assert _is_command_path(parser, words), command
            continue
        parser.parse_args(words[:1] if words[0] != "keys" else words)


def _is_command_path(parser: Any, words: list[str]) -> bool:
    for word in words:
        choices = next((a.choices for a in parser._actions if isinstance(a.choices, dict)), None)
        if choices is None:
            return True  # the rest are arguments
        if word not in choices:
            return False
        parser = choices[word]
    return True
