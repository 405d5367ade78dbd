"""Versioned migrations: apply once, record the version, refuse mismatched schemas."""

from __future__ import annotations

import psycopg
import pytest

from livinglab.errors import MigrationError, SchemaVersionError
from livinglab.settings import TimescaleMode
from livinglab.storage import check_schema, current_version, latest_version, migrate, uses_timescaledb
from livinglab.storage.migrate import load_migrations


def test_versions_are_contiguous_from_one() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1
    assert len(set(versions)) == len(versions)


def test_migrate_empty_database_then_again(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        with pytest.raises(SchemaVersionError) as raised:
            check_schema(conn)
        assert raised.value.found == 0
    applied = migrate(empty_database_url, timescaledb=TimescaleMode.OFF)
    assert applied == [m.version for m in load_migrations()]
    assert migrate(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        assert check_schema(conn) == latest_version()
        assert not uses_timescaledb(conn)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {
        "sensors",
        "readings",
        "rejected",
        "dirty_windows",
        "agg_1m",
        "agg_1h",
        "agg_1d",
        "ispu_hourly",
        "aqi_hourly",
        "traffic_hourly",
        "ingest_counters",
        "api_keys",
        "schema_migrations",
    } <= tables


def test_the_iso_time_function_is_inlined_into_queries(fresh_database_url: str) -> None:
    # The busy JSON lists call livinglab_iso once per item: inlined, it costs no SQL function call.
    with psycopg.connect(fresh_database_url) as conn:
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN VERBOSE SELECT livinglab_iso(created_at) FROM events").fetchall()
        )
        assert "livinglab_iso" not in plan, plan
        assert "to_json" in plan, plan
        texts = conn.execute(
            "SELECT livinglab_iso('2026-11-28 17:00:00+07'), livinglab_iso('2026-11-28 10:00:00.25Z'),"
            " livinglab_iso(NULL)"
        ).fetchone()
    assert texts == ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00.25Z", None)


def test_newer_schema_is_refused(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, variant) VALUES (9999, 'future', 'plain')")
        with pytest.raises(SchemaVersionError, match="newer"):
            check_schema(conn)
        assert current_version(conn) == 9999


def test_require_timescaledb_fails_clearly_without_it(empty_database_url: str) -> None:
    # Installed but not preloaded counts as without it: the extension cannot be created there.
    with psycopg.connect(empty_database_url) as conn:
        preloaded = conn.execute("SELECT 1 FROM pg_settings WHERE name LIKE 'timescaledb.%'").fetchone()
    if preloaded:
        pytest.skip("this server preloads TimescaleDB")
    with pytest.raises(MigrationError, match="timescaledb"):
        migrate(empty_database_url, timescaledb=TimescaleMode.REQUIRE)


@pytest.mark.parametrize("rule_id", ["Upper", "dot.ted"])
def test_rule_ids_outside_the_sensor_id_pattern_are_refused_by_the_table(fresh_database_url: str, rule_id: str) -> None:
    # The API validates rule ids with IDENTIFIER_PATTERN; the table holds a row written past it to the same rule.
    insert = (
        "INSERT INTO alarm_rules (rule_id, name, metric, op, threshold, clear_threshold, severity)"
        " VALUES (%s, 'r', 'ispu', '>', 100, 90, 'warning')"
    )
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute(insert, ("rule-ok_1",))
        with pytest.raises(psycopg.errors.CheckViolation, match="alarm_rules_rule_id_check"):
            conn.execute(insert, (rule_id,))
