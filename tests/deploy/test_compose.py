"""docker-compose.yml is valid against the compose specification schema (no container engine here).

The schema is the copy vendored by the `check-jsonschema` package (compose-spec/compose-spec, Apache-2.0).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from livinglab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(schema_text)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_services_run_real_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    services = compose["services"]
    assert {"mosquitto", "db", "migrate", "ingest", "process", "api", "simulator"} <= set(services)
    for name, service in services.items():
        if "command" in service and service.get("build"):
            parser.parse_args(service["command"])  # exits (fails the test) on an unknown command
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    assert services["simulator"]["profiles"] == ["simulate"]
    for path in ("deploy/mosquitto/mosquitto.conf", "deploy/mosquitto/acl", "Dockerfile", ".env.example"):
        assert (ROOT / path).is_file(), path


def test_compose_has_no_default_secrets(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "MQTT_INGEST_PASSWORD", "MQTT_SIMULATOR_PASSWORD"):
        assert f"${{{secret}:?" in text
        assert f"${{{secret}:-" not in text
