"""Rules and evaluation for alarm tests: write a rule, process what was written, evaluate, read the alarms."""

from __future__ import annotations

from typing import Any

import psycopg

from livinglab.alarms.evaluator import Outcome, evaluate_until_idle
from livinglab.alarms.rules import RuleSpec
from livinglab.alarms.store import import_rules
from processing import ProcessorSettings, process_until_idle


def add_rule(url: str, **fields: Any) -> str:
    """Create a rule (defaults: severity warning, op `>`); returns its id."""
    spec = RuleSpec.model_validate({"name": fields.get("rule_id", "rule"), "severity": "warning", "op": ">", **fields})
    with psycopg.connect(url) as conn:
        (rule,) = import_rules(conn, [spec])
    return str(rule["rule_id"])


def process_and_evaluate(url: str) -> Outcome:
    """Run the processors' rounds until idle, then the evaluator until it is at the end of the feed."""
    settings = ProcessorSettings(database_url=url, hour_rollup_delay_s=0, day_rollup_delay_s=0)
    with psycopg.connect(url) as conn:
        process_until_idle(conn, settings)
    with psycopg.connect(url, autocommit=True) as conn:
        return evaluate_until_idle(conn, force_silence=True)


def alarms(url: str, rule_id: str | None = None) -> list[dict[str, Any]]:
    """The alarms (of `rule_id`), oldest first, as dictionaries of their columns and `sensor_id`."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT a.*, s.sensor_id FROM alarms a JOIN sensors s USING (sensor_key)"
            " WHERE %(rule)s::text IS NULL OR rule_id = %(rule)s ORDER BY alarm_id",
            {"rule": rule_id},
        )
        return cur.fetchall()
