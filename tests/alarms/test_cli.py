"""`livinglab alarms rules import FILE` (all or nothing) and `livinglab alarms list`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livinglab.alarms.rule_files import default_rules
from tests.alarms.support import add_rule
from tests.support.roles import rows
from tests.support.sensors import register, traffic

pytestmark = pytest.mark.integration


def _run(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVINGLAB_")}
    env.update({"LIVINGLAB_DATABASE_URL": url, "LIVINGLAB_DATA_DIR": str(tmp_path / "data")})
    return subprocess.run(
        [sys.executable, "-m", "livinglab", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


GOOD = """
rules:
  - {rule_id: pm25-high, name: PM2.5 high, metric: "mean_1m:pm25", op: ">", threshold: 55, severity: warning}
  - {rule_id: tc-dj, name: Jam, metric: degree_of_saturation, op: ">", threshold: 0.85, severity: critical,
     sensor_id: tc-1}
"""


def test_import_is_all_or_nothing(fresh_database_url: str, tmp_path: Path) -> None:
    url = fresh_database_url
    register(url, traffic("tc-1"), "aq-1")
    good = tmp_path / "rules.yaml"
    good.write_text(GOOD)
    result = _run(url, tmp_path, "alarms", "rules", "import", str(good))
    assert result.returncode == 0, result.stderr
    assert "imported 2 rules" in result.stderr
    assert rows(url, "SELECT rule_id, city FROM alarm_rules ORDER BY 1") == [("pm25-high", None), ("tc-dj", "jakarta")]

    bad_entry = tmp_path / "bad.yaml"
    bad_entry.write_text(GOOD.replace("pm25-high", "pm25-new") + "  - {name: x, metric: pm99, op: '>', threshold: 1}\n")
    result = _run(url, tmp_path, "alarms", "rules", "import", str(bad_entry))
    assert result.returncode != 0
    assert "entry 3" in result.stderr
    assert "nothing imported" in result.stderr
    # A rule the registry refuses (DJ of an air station) also leaves everything as it was.
    bad_scope = tmp_path / "scope.yaml"
    bad_scope.write_text(GOOD.replace("pm25-high", "pm25-new").replace("tc-1", "aq-1"))
    result = _run(url, tmp_path, "alarms", "rules", "import", str(bad_scope))
    assert result.returncode != 0
    assert "aq-1" in result.stderr
    assert rows(url, "SELECT rule_id FROM alarm_rules ORDER BY 1") == [("pm25-high",), ("tc-dj",)]


def test_the_default_rule_set_validates_and_list_prints_alarms(fresh_database_url: str, tmp_path: Path) -> None:
    url = fresh_database_url
    assert {r.metric for r in default_rules()} == {"ispu", "los_target_missed", "silence_s", "completeness_1h"}
    key = register(url, "aq-1")["aq-1"]
    rule = add_rule(url, rule_id="quiet", metric="silence_s", threshold=-1)
    rows(
        url,
        "INSERT INTO alarms (rule_id, sensor_key, city, district, severity, state, raised_at, value, last_value)"
        " VALUES (%s, %s, 'jakarta', 'Menteng', 'warning', 'active', now(), 5, 5) RETURNING 1",
        (rule, key),
    )
    result = _run(url, tmp_path, "alarms", "list", "--json", "--state", "open")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    alarm = json.loads(line)
    assert (alarm["rule_id"], alarm["sensor_id"], alarm["state"]) == ("quiet", "aq-1", "active")
    table = _run(url, tmp_path, "alarms", "list").stdout.splitlines()
    assert table[0].startswith("alarm_id\tstate")
    assert len(table) == 2
