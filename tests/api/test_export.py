"""Bulk export (`/v1/export/...` and `livinglab export`): readings files hold exactly the stored rows, aggregates
files exactly what `/v1/sensors/{id}/aggregates` serves.

CSV is parsed back with the standard library, Parquet read back by polars (the writer is pyarrow), and both are
compared with the rows read from the tables (readings) or served by the API (aggregates), value for value and bit
for bit.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psycopg
import pytest

from livinglab import cli
from livinglab.domain import QUANTITIES_BY_CODE
from livinglab.precision import round_field
from livinglab.storage.keys import Scope, create_key
from tests.support import sensors
from tests.support.api import Keys, assert_problem, make_keys, serving

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=2)
#: Values whose text forms are hard to get right: tiny, huge, negative zero, many digits, integers.
AWKWARD = [0.1, 1e-300, 1.7976931348623157e308, -0.0, 123456.789012345678, 20.0, 2.0**-1074, 1 / 3]
#: Aggregate means by hour with long binary tails or exact halves: served rounded, never as stored.
TAILS = {1: 662.5999999999999, 2: 35.449999999999996, 3: 2.675, 4: -0.125}
#: A completeness with a long binary tail (0.1 + 0.2), served 0.3.
TAIL_COMPLETENESS = 0.30000000000000004


@pytest.fixture(scope="module")
def stored(api_database_url: str) -> dict[str, Any]:
    """Two cities' sensors with readings (microsecond times, awkward values, one row outside the range) and
    aggregates with nulls."""
    rng = random.Random(17)
    specs = [
        sensors.air("ex-a1", "jakarta"),
        sensors.air("ex-a2", "jakarta", "Gambir"),
        sensors.traffic("ex-t1", "jakarta"),
        sensors.air("ex-b1", "bandung", "Coblong"),
    ]
    with psycopg.connect(api_database_url) as conn:
        ids = sensors.register(conn, specs)
        for spec in specs:
            codes = (1, 2, 8) if spec.kind.value == "air" else (101, 104)
            for code in codes:
                rows = []
                for i in range(300):
                    ts = START + timedelta(minutes=7 * i, microseconds=rng.randrange(1_000_000))
                    value = AWKWARD[i] if i < len(AWKWARD) else rng.uniform(-50, 500)
                    rows.append((ids[spec.sensor_id], code, ts, value, ts))
                rows.append((ids[spec.sensor_id], code, END, 1.0, END))  # at `end`: left out
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO readings (sensor_key, quantity, ts, value, received_at)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        rows,
                    )
            for h in range(30):
                mean = None if h % 5 == 0 else TAILS.get(h, rng.uniform(0, 100))
                completeness = TAIL_COMPLETENESS if h == 2 else None if h % 7 == 0 else 0.5
                conn.execute(
                    "INSERT INTO agg_1h (sensor_key, quantity, window_start, count, sum, mean, min, max, p50, p95,"
                    " completeness) VALUES (%s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s)",
                    (
                        ids[spec.sensor_id],
                        codes[0],
                        START + timedelta(hours=h),
                        h,
                        mean,
                        mean,
                        mean,
                        mean,
                        mean,
                        completeness,
                    ),
                )
        conn.commit()
    return {"ids": ids}


@pytest.fixture(scope="module")
def api(api_database_url: str, stored: dict[str, Any]) -> Iterator[httpx.Client]:
    with serving(api_database_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def export_keys(api_database_url: str) -> Keys:
    return make_keys(api_database_url)


def _stored_readings(url: str, cities: list[str] | None = None, **where: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.sensor_id, r.quantity, r.ts, r.value FROM readings r JOIN sensors s USING (sensor_key)"
            " WHERE r.ts >= %s AND r.ts < %s AND s.sensor_id LIKE 'ex-%%' AND (%s::text[] IS NULL OR s.city = ANY(%s))",
            (START, END, cities, cities),
        ).fetchall()
    out = [(s, QUANTITIES_BY_CODE[q].name, ts.astimezone(UTC), v) for s, q, ts, v in rows]
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def _stored_aggregates(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.sensor_id, a.quantity, a.window_start, a.count, a.mean, a.min, a.max, a.p50, a.p95,"
            " a.completeness FROM agg_1h a JOIN sensors s USING (sensor_key)"
            " WHERE a.window_start >= %s AND a.window_start < %s AND s.sensor_id LIKE 'ex-%%'",
            (START, END),
        ).fetchall()
    out = [(r[0], QUANTITIES_BY_CODE[r[1]].name, r[2].astimezone(UTC), *r[3:], True) for r in rows]
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def _served_aggregates(api: httpx.Client, keys: Keys, sensor_ids: list[str]) -> list[tuple[Any, ...]]:
    """What `/v1/sensors/{id}/aggregates` serves for the export's range, as export rows."""
    out = []
    for sensor_id in sensor_ids:
        page = api.get(
            f"/v1/sensors/{sensor_id}/aggregates", params=_range(window="1h", limit=1000), headers=keys.header()
        )
        assert page.status_code == 200, page.text
        assert page.json()["next_cursor"] is None
        out += [
            (sensor_id, a["quantity"], datetime.fromisoformat(a["window_start"]), a["count"], a["mean"], a["min"],
             a["max"], a["p50"], a["p95"], a["completeness"], a["final"])
            for a in page.json()["items"]
        ]  # fmt: skip
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def _range(**params: Any) -> dict[str, Any]:
    return {"start": START.isoformat(), "end": END.isoformat(), **params}


def _parse_csv_readings(text: str) -> list[tuple[Any, ...]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    assert next(reader) == ["sensor_id", "quantity", "ts", "value"]
    return [(s, q, datetime.fromisoformat(ts), float(v)) for s, q, ts, v in reader]


def _same_floats(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    """Equal rows, floats bit for bit (so -0.0 differs from 0.0)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x == y
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float):
                assert math.copysign(1, u) == math.copysign(1, v)


def _sensor_scoped_key(url: str, *cities: str) -> str:
    with psycopg.connect(url) as conn:
        key = create_key(conn, Scope.READ, name="export-city", cities=list(cities))
        conn.commit()
    return key


def test_csv_readings_are_the_stored_rows(api: httpx.Client, export_keys: Keys, api_database_url: str) -> None:
    response = api.get("/v1/export/readings", params=_range(), headers=export_keys.header())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="readings.csv"' in response.headers["content-disposition"]
    body = response.content
    assert body.count(b"\r\n") == body.count(b"\n"), "RFC 4180 line ends"
    text = body.decode("utf-8")
    assert all(line.split(",")[2].endswith("Z") for line in text.splitlines()[1:])
    exported = _parse_csv_readings(text)
    stored = _stored_readings(api_database_url)
    assert len(exported) == 4 * 300 + 3 * 300 + 2 * 300 + 3 * 300 - 300  # air 3 quantities, traffic 2
    _same_floats(exported, stored)


def test_parquet_readings_read_back_by_polars(api: httpx.Client, export_keys: Keys, api_database_url: str) -> None:
    response = api.get("/v1/export/readings", params=_range(format="parquet"), headers=export_keys.header())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pl.read_parquet(io.BytesIO(response.content))
    assert frame.columns == ["sensor_id", "quantity", "ts", "value"]
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    exported = [(s, q, ts, v) for s, q, ts, v in frame.iter_rows()]
    _same_floats(exported, _stored_readings(api_database_url))


def test_parquet_is_written_in_row_groups(api_database_url: str, stored: dict[str, Any], tmp_path: Path) -> None:
    """More rows than a row group holds: several groups, read back whole."""
    import pyarrow.parquet as pq

    from livinglab import export

    request = export.ExportRequest(start=START, end=END)
    with psycopg.connect(api_database_url) as conn:
        old, export.ROW_GROUP_ROWS = export.ROW_GROUP_ROWS, 500  # type: ignore[misc]
        try:
            with (tmp_path / "r.parquet").open("wb") as out:
                rows = export.write_export(conn, request, export.ExportFormat.PARQUET, out)
        finally:
            export.ROW_GROUP_ROWS = old  # type: ignore[misc]
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    assert meta.num_rows == rows == len(_stored_readings(api_database_url))
    assert meta.num_row_groups == math.ceil(rows / 500)


def test_aggregates_csv_and_parquet(api: httpx.Client, export_keys: Keys, api_database_url: str) -> None:
    """The files hold, field by field, what `/v1/sensors/{id}/aggregates` serves: statistics and completeness at
    their precision, `count`, `min` and `max` as stored."""
    stored = _stored_aggregates(api_database_url)
    served = _served_aggregates(api, export_keys, sorted({r[0] for r in stored}))
    assert len(served) == len(stored) == 4 * 30
    for row, kept in zip(served, stored, strict=True):
        sensor_id, quantity, window_start, count, *_ = kept
        mean, low, high, p50, p95, completeness = kept[4:10]
        assert row[:4] == (sensor_id, quantity, window_start, count)
        assert row[4:10] == (
            round_field("mean", mean, quantity=quantity), low, high, round_field("p50", p50, quantity=quantity),
            round_field("p95", p95, quantity=quantity), round_field("completeness", completeness),
        )  # fmt: skip
    response = api.get("/v1/export/aggregates", params=_range(window="1h"), headers=export_keys.header())
    assert response.status_code == 200, response.text
    reader = csv.reader(io.StringIO(response.text, newline=""))
    header = next(reader)
    assert header == [
        "sensor_id", "quantity", "window_start", "count", "mean", "min", "max", "p50", "p95", "completeness", "final",
    ]  # fmt: skip

    def number(text: str) -> float | None:
        return None if text == "" else float(text)

    rows = list(reader)
    assert {r[-1] for r in rows} == {"true"}
    exported = [
        (r[0], r[1], datetime.fromisoformat(r[2]), int(r[3]), *map(number, r[4:10]), r[10] == "true") for r in rows
    ]
    assert exported == served
    assert any(r[4] == "" for r in rows), "nulls are empty fields"
    # The long binary tails are served rounded; `min` and `max` (readings) keep theirs.
    tails = {(r[0], datetime.fromisoformat(r[2])): r for r in rows}
    pm25 = tails["ex-a1", START + timedelta(hours=1)]
    assert (pm25[4], pm25[5], pm25[6], pm25[7], pm25[8]) == ("662.6", "662.5999999999999", "662.5999999999999",
                                                             "662.6", "662.6")  # fmt: skip
    assert tails["ex-a1", START + timedelta(hours=2)][4] == "35.45"
    assert tails["ex-a1", START + timedelta(hours=2)][9] == "0.3"
    assert tails["ex-a1", START + timedelta(hours=3)][4] == "2.68"  # half away from zero, as PostgreSQL rounds
    assert tails["ex-a1", START + timedelta(hours=4)][4] == "-0.13"
    assert tails["ex-t1", START + timedelta(hours=1)][4] == "662.6"  # `sm` counts: one place more than whole
    assert tails["ex-t1", START + timedelta(hours=2)][4] == "35.5"  # 35.45 as written in 15 digits

    parquet = api.get(
        "/v1/export/aggregates", params=_range(window="1h", format="parquet"), headers=export_keys.header()
    )
    frame = pl.read_parquet(io.BytesIO(parquet.content))
    assert frame.columns == header
    _same_floats(list(frame.iter_rows()), served)


def test_filters(api: httpx.Client, export_keys: Keys, api_database_url: str) -> None:
    stored = _stored_readings(api_database_url)
    for params, keep in (
        ({"sensor_id": "ex-a2"}, lambda r: r[0] == "ex-a2"),
        ({"quantity": "pm10"}, lambda r: r[1] == "pm10"),
        ({"city": "bandung"}, lambda r: r[0] == "ex-b1"),
        ({"district": "Gambir"}, lambda r: r[0] == "ex-a2"),
    ):
        response = api.get("/v1/export/readings", params=_range(**params), headers=export_keys.header())
        assert response.status_code == 200, response.text
        assert _parse_csv_readings(response.text) == [r for r in stored if keep(r)], params
    narrow = api.get(
        "/v1/export/readings",
        params={"start": (START + timedelta(hours=1)).isoformat(), "end": (START + timedelta(hours=2)).isoformat()},
        headers=export_keys.header(),
    )
    hour = [r for r in stored if START + timedelta(hours=1) <= r[2] < START + timedelta(hours=2)]
    assert _parse_csv_readings(narrow.text) == hour


def test_a_city_limited_key_exports_its_city_only(api: httpx.Client, api_database_url: str) -> None:
    key = _sensor_scoped_key(api_database_url, "jakarta")
    headers = {"Authorization": f"Bearer {key}"}
    response = api.get("/v1/export/readings", params=_range(), headers=headers)
    exported = _parse_csv_readings(response.text)
    assert exported == _stored_readings(api_database_url, ["jakarta"])
    assert {r[0] for r in exported} == {"ex-a1", "ex-a2", "ex-t1"}
    for params in ({"city": "bandung"}, {"sensor_id": "ex-b1"}):
        other = api.get("/v1/export/readings", params=_range(**params), headers=headers)
        assert other.status_code == 200
        assert other.text == "sensor_id,quantity,ts,value\r\n"
    parquet = api.get("/v1/export/readings", params=_range(format="parquet"), headers=headers)
    assert set(pl.read_parquet(io.BytesIO(parquet.content))["sensor_id"]) == {"ex-a1", "ex-a2", "ex-t1"}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"start": "2025-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, 400),  # more than 366 days
        ({"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, 400),
        ({"start": "2026-03-01T00:00:00"}, 400),  # no offset
        ({"quantity": "nope"}, 400),
        ({"format": "xlsx"}, 422),
        ({"sensor_id": "x'; DROP TABLE readings; --"}, 422),
    ],
)
def test_bad_parameters_are_rejected(api: httpx.Client, export_keys: Keys, params: dict[str, str], status: int) -> None:
    assert_problem(api.get("/v1/export/readings", params=params, headers=export_keys.header()), status)


def test_an_unknown_window_and_no_key_are_rejected(api: httpx.Client, export_keys: Keys) -> None:
    assert_problem(api.get("/v1/export/aggregates", params=_range(), headers=export_keys.header()), 422)
    assert_problem(api.get("/v1/export/aggregates", params=_range(window="2h"), headers=export_keys.header()), 422)
    assert_problem(api.get("/v1/export/readings", params=_range()), 401)


def test_the_command_line_writes_the_same_files(
    api: httpx.Client,
    export_keys: Keys,
    api_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LIVINGLAB_DATABASE_URL", api_database_url)
    for fmt in ("csv", "parquet"):
        target = tmp_path / f"readings.{fmt}"
        args = ["export", "readings", str(target), "--start", START.isoformat(), "--end", END.isoformat()]
        assert cli.main(args) == 0
        served = api.get("/v1/export/readings", params=_range(format=fmt), headers=export_keys.header()).content
        if fmt == "csv":
            assert target.read_bytes() == served
        else:
            assert pl.read_parquet(target).equals(pl.read_parquet(io.BytesIO(served)))
    err = capsys.readouterr().err
    assert "rows/s" in err
    assert "100.0%" in err
    assert f"exported {len(_stored_readings(api_database_url))} rows" in err
    target = tmp_path / "agg.csv"
    args = ["export", "aggregates", str(target), "--window", "1h", "--city", "bandung", "--quiet",
            "--start", START.isoformat(), "--end", END.isoformat()]  # fmt: skip
    assert cli.main(args) == 0
    lines = target.read_text().splitlines()
    assert len(lines) == 31
    assert all(line.startswith("ex-b1,pm25,") for line in lines[1:])
    served = api.get(
        "/v1/export/aggregates", params=_range(window="1h", city="bandung"), headers=export_keys.header()
    ).content
    assert target.read_bytes() == served  # rounded as the API rounds them


def test_a_client_that_leaves_frees_its_export(api_database_url: str, stored: dict[str, Any]) -> None:
    """One export slot: a second export meanwhile is refused (503), and an export whose client disconnects
    ends its thread and its database connection, freeing the slot."""
    with psycopg.connect(api_database_url) as conn:  # enough rows to fill the hand-over queue and the sockets
        conn.execute(
            "INSERT INTO readings (sensor_key, quantity, ts, value, received_at)"
            " SELECT %s, 9, %s + make_interval(secs => g), g, now() FROM generate_series(1, 1000000) g",
            (stored["ids"]["ex-a1"], START),
        )
        conn.commit()
    keys = make_keys(api_database_url)
    with serving(api_database_url, max_concurrent_exports=1) as base, httpx.Client(base_url=base, timeout=30) as c:
        whole = {"start": START.isoformat(), "end": (START + timedelta(days=12)).isoformat()}  # about 45 MB
        with c.stream("GET", "/v1/export/readings", params=whole, headers=keys.header()) as first:
            assert first.status_code == 200
            chunks = first.iter_raw(1024)  # kept: a dropped iterator closes the response
            next(chunks)
            assert_problem(c.get("/v1/export/readings", params=_range(), headers=keys.header()), 503)
        # The client went away mid-file: its export stops and lets the next one run.
        for _ in range(100):
            response = c.get("/v1/export/readings", params=_range(sensor_id="ex-b1"), headers=keys.header())
            if response.status_code == 200:
                break
            time.sleep(0.1)
        assert response.status_code == 200
        assert len(_parse_csv_readings(response.text)) == 900
        with psycopg.connect(api_database_url) as conn:
            for _ in range(100):
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'livinglab-api-export'"
                ).fetchone()
                if busy == (0,):
                    break
                time.sleep(0.1)
            assert busy == (0,)
    with psycopg.connect(api_database_url) as conn:
        conn.execute("DELETE FROM readings WHERE quantity = 9")
        conn.commit()
