"""The sensor registry through the API and the bulk import command."""

from __future__ import annotations

import select
from pathlib import Path

import psycopg
import pytest

from livinglab.cli import main
from tests.support.api import Keys, assert_problem, walk

pytestmark = pytest.mark.integration

TRAFFIC = {
    "sensor_id": "tc-01",
    "city": "bandung",
    "district": "Coblong",
    "kind": "traffic",
    "lat": -6.89,
    "lon": 107.61,
    "interval_s": 300,
    "road_type": "2/2-TT",
    "lanes": 2,
    "road_function": "kolektor_sekunder",
    "city_population": 2_500_000,
}


def _notifications(conn: psycopg.Connection, timeout_s: float = 2.0) -> list[str]:
    select.select([conn.fileno()], [], [], timeout_s)
    return [n.payload for n in conn.notifies(timeout=0.2)]


def test_create_read_replace_delete(client, keys: Keys, api_database_url: str) -> None:
    w = keys.header("write")
    with psycopg.connect(api_database_url, autocommit=True) as listener:
        listener.execute("LISTEN livinglab_registry")
        created = client.post("/v1/sensors", json=TRAFFIC, headers=w)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/v1/sensors/tc-01"
        assert "tc-01" in _notifications(listener)
        body = created.json()
        # Defaults of CONTRACT.md section 2.
        assert body["name"] == "tc-01"
        assert body["lane_width_m"] == 3.5
        assert body["carriageway_width_m"] == 7.0
        assert body["direction_split_pct"] == 50
        assert body["side_friction_factor"] == 1.0
        assert body["created_at"].endswith("Z")

        assert client.get("/v1/sensors/tc-01", headers=keys.header()).json() == body
        assert_problem(client.post("/v1/sensors", json=TRAFFIC, headers=w), 409)

        # A GET body, edited, goes back as the replacement.
        replaced = client.put("/v1/sensors/tc-01", json={**body, "lanes": 4, "name": "Jl. Dago"}, headers=w)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["lanes"] == 4
        assert replaced.json()["name"] == "Jl. Dago"
        assert replaced.json()["updated_at"] > body["updated_at"]
        assert "tc-01" in _notifications(listener)

        deleted = client.delete("/v1/sensors/tc-01", headers=w)
        assert deleted.status_code == 204
        assert "tc-01" in _notifications(listener)
    assert_problem(client.get("/v1/sensors/tc-01", headers=keys.header()), 404)
    assert_problem(client.delete("/v1/sensors/tc-01", headers=w), 404)
    assert_problem(client.put("/v1/sensors/tc-01", json=TRAFFIC, headers=w), 404)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"road_type": None}, "road_type"),
        ({"lanes": None, "road_function": None}, "lanes"),
        ({"road_type": "4/2-T", "carriageway_width_m": 7.0}, "2/2-TT"),
        ({"road_function": "jalan_raya"}, "road_function"),
        ({"road_type": "5/2-T"}, "road_type"),
        ({"lanes": 0}, "lanes"),
        ({"side_friction_factor": 0}, "side_friction_factor"),
    ],
)
def test_traffic_attributes_are_validated(client, keys: Keys, change: dict, message: str) -> None:
    spec = {k: v for k, v in {**TRAFFIC, "sensor_id": "tc-bad", **change}.items() if v is not None}
    body = assert_problem(client.post("/v1/sensors", json=spec, headers=keys.header("write")), 422)
    assert message in str(body["errors"])


def test_replace_validates_and_keeps_kind(client, keys: Keys) -> None:
    w = keys.header("write")
    assert client.post("/v1/sensors", json={**TRAFFIC, "sensor_id": "tc-02"}, headers=w).status_code == 201
    body = assert_problem(
        client.put("/v1/sensors/tc-02", json={**TRAFFIC, "sensor_id": "tc-02", "lanes": None}, headers=w), 422
    )
    assert "lanes" in str(body["errors"])
    assert_problem(client.put("/v1/sensors/tc-02", json={**TRAFFIC, "sensor_id": "other"}, headers=w), 422)
    air = {"city": "bandung", "district": "Coblong", "kind": "air", "lat": -6.89, "lon": 107.61}
    assert_problem(client.put("/v1/sensors/tc-02", json=air, headers=w), 409)
    air_station = {**air, "sensor_id": "aq-02"}
    assert client.post("/v1/sensors", json=air_station, headers=w).status_code == 201
    body = assert_problem(client.put("/v1/sensors/aq-02", json={**air, "lanes": 2}, headers=w), 422)
    assert "traffic attributes" in str(body["errors"])


def test_delete_removes_the_sensors_rows(client, keys: Keys, api_database_url: str) -> None:
    w = keys.header("write")
    assert client.post("/v1/sensors", json={**TRAFFIC, "sensor_id": "tc-03"}, headers=w).status_code == 201
    assert client.post("/v1/sensors", json={**TRAFFIC, "sensor_id": "tc-04"}, headers=w).status_code == 201
    tables = ("readings", "agg_1m", "agg_1h", "agg_1d", "ingest_counters")
    with psycopg.connect(api_database_url) as conn:
        for sensor_id in ("tc-03", "tc-04"):
            key = conn.execute("SELECT sensor_key FROM sensors WHERE sensor_id = %s", (sensor_id,)).fetchone()[0]
            conn.execute(
                "INSERT INTO readings SELECT %s, 101, t, 5, now() FROM generate_series("
                "now() - interval '2 hours', now(), interval '1 minute') t",
                (key,),
            )
            for table in ("agg_1m", "agg_1h", "agg_1d"):
                conn.execute(
                    f"INSERT INTO {table} (sensor_key, quantity, window_start, count, sum)"
                    " VALUES (%s, 101, now(), 1, 5)",
                    (key,),
                )
            conn.execute("INSERT INTO ingest_counters (sensor_key, hour, accepted) VALUES (%s, now(), 3)", (key,))
        conn.commit()
    assert client.delete("/v1/sensors/tc-03", headers=w).status_code == 204
    with psycopg.connect(api_database_url) as conn:
        keys_left = {r[0] for r in conn.execute("SELECT sensor_key FROM sensors WHERE sensor_id LIKE 'tc-0%'")}
        for table in tables:
            owners = {r[0] for r in conn.execute(f"SELECT DISTINCT sensor_key FROM {table}")}
            assert owners, table
            assert owners <= keys_left, table


def test_list_walks_every_sensor_once_with_filters(client, keys: Keys, api_database_url: str) -> None:
    w = keys.header("write")
    for i in range(57):
        spec = {**TRAFFIC, "sensor_id": f"walk-{i:03d}", "city": "walkcity", "district": f"d{i % 3}"}
        if i % 2:
            spec = {k: spec[k] for k in ("sensor_id", "city", "district", "lat", "lon")} | {"kind": "air"}
        assert client.post("/v1/sensors", json=spec, headers=w).status_code == 201
    r = keys.header()
    everything = walk(client, "/v1/sensors", {"city": "walkcity", "limit": 7}, r)
    assert [s["sensor_id"] for s in everything] == [f"walk-{i:03d}" for i in range(57)]
    air = walk(client, "/v1/sensors", {"city": "walkcity", "kind": "air", "limit": 5}, r)
    assert {s["sensor_id"] for s in air} == {f"walk-{i:03d}" for i in range(57) if i % 2}
    d1 = walk(client, "/v1/sensors", {"city": "walkcity", "district": "d1", "limit": 1000}, r)
    assert len(d1) == 19
    assert all(s["district"] == "d1" for s in d1)
    assert_problem(client.get("/v1/sensors", params={"cursor": "%%%"}, headers=r), 400)
    assert_problem(client.get("/v1/sensors", params={"kind": "water"}, headers=r), 422)
    assert_problem(client.get("/v1/sensors", params={"limit": 0}, headers=r), 422)


def _import(path: Path, url: str, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setenv("LIVINGLAB_DATABASE_URL", url)
    return main(["sensors", "import", str(path), *extra])


def test_import_yaml_and_csv(tmp_path: Path, api_database_url: str, client, keys: Keys, monkeypatch) -> None:
    yaml_file = tmp_path / "sensors.yaml"
    yaml_file.write_text(
        "sensors:\n"
        "  - {sensor_id: imp-aq-1, city: surabaya, district: Genteng, kind: air, lat: -7.26, lon: 112.74}\n"
        "  - sensor_id: imp-tc-1\n    city: surabaya\n    district: Genteng\n    kind: traffic\n"
        "    lat: -7.26\n    lon: 112.75\n    road_type: 4/2-T\n    lanes: 2\n    road_function: arteri_sekunder\n"
        "    city_population: 2900000\n"
    )
    assert _import(yaml_file, api_database_url, monkeypatch) == 0
    csv_file = tmp_path / "sensors.csv"
    csv_file.write_text(
        "sensor_id,city,district,kind,lat,lon,interval_s,road_type,lanes,road_function,city_population\n"
        "imp-tc-2,surabaya,Tegalsari,traffic,-7.27,112.73,300,2/2-TT,2,lokal_sekunder,2900000\n"
        "imp-aq-1,surabaya,Tegalsari,air,-7.26,112.74,,,,,\n"
    )
    assert _import(csv_file, api_database_url, monkeypatch) == 0
    found = walk(client, "/v1/sensors", {"city": "surabaya"}, keys.header())
    by_id = {s["sensor_id"]: s for s in found}
    assert set(by_id) == {"imp-aq-1", "imp-tc-1", "imp-tc-2"}
    assert by_id["imp-aq-1"]["district"] == "Tegalsari"  # the CSV updated the YAML's entry
    assert by_id["imp-tc-2"]["interval_s"] == 300
    assert by_id["imp-tc-2"]["carriageway_width_m"] == 7.0


def test_import_refuses_a_file_with_any_bad_entry(tmp_path: Path, api_database_url: str, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "sensor_id,city,district,kind,lat,lon,road_type,lanes\n"
        "bad-ok,medan,Polonia,air,3.5,98.6,,\n"
        "bad-tc,medan,Polonia,traffic,3.5,98.6,4/2-T,2\n"
    )
    assert _import(bad, api_database_url, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "entry 2 (bad-tc)" in err
    assert "road_function" in err
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("sensor_id,colour\nx,red\n")
    assert _import(unknown, api_database_url, monkeypatch) == 2
    assert "colour" in capsys.readouterr().err
    with psycopg.connect(api_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sensors WHERE city = 'medan'").fetchone()[0] == 0


LORAWAN = {"city": "bogor", "district": "Tanah Sareal", "kind": "air", "lat": -6.57, "lon": 106.78}


def test_lorawan_sensors_dev_eui_and_field_map(client, keys: Keys, api_database_url: str) -> None:
    w = keys.header("write")
    field_map = {"temperature": "temp", "no2_ppb": {"quantity": "no2", "unit": "ppb"}, "/air/pm25": "pm25", "x": None}
    created = client.post(
        "/v1/sensors", json={**LORAWAN, "sensor_id": "lw-1", "dev_eui": "0004A30B001C0530", "field_map": field_map},
        headers=w,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["dev_eui"] == "0004a30b001c0530"  # one spelling, whatever the case it was given in
    assert body["field_map"] == {**field_map, "no2_ppb": {"quantity": "no2", "unit": "ppb"}}
    assert client.get("/v1/sensors/lw-1", headers=keys.header()).json() == body
    # The DevEUI is taken, in any case, on registration and on replacement.
    taken = assert_problem(
        client.post("/v1/sensors", json={**LORAWAN, "sensor_id": "lw-2", "dev_eui": "0004a30b001c0530"}, headers=w),
        409,
    )
    assert "dev_eui" in taken["detail"]
    assert client.post("/v1/sensors", json={**LORAWAN, "sensor_id": "lw-2"}, headers=w).status_code == 201
    assert_problem(client.put("/v1/sensors/lw-2", json={**LORAWAN, "dev_eui": "0004A30B001C0530"}, headers=w), 409)
    moved = client.put("/v1/sensors/lw-1", json={**body, "dev_eui": None, "field_map": None}, headers=w)
    assert moved.status_code == 200, moved.text
    assert moved.json()["dev_eui"] is None
    assert client.put("/v1/sensors/lw-2", json={**LORAWAN, "dev_eui": "0004A30B001C0530"}, headers=w).status_code == 200
    for bad, word in [
        ({"dev_eui": "0004A30B001C053"}, "dev_eui"),
        ({"dev_eui": "0004A30B001C053G"}, "dev_eui"),
        ({"field_map": {"speed_kmh": "speed"}}, "traffic quantity"),
        ({"field_map": {"no2": {"quantity": "no2", "unit": "mph"}}}, "not accepted"),
        ({"field_map": {"t": "tmp"}}, "not a quantity"),
        ({"field_map": {"/a~2": "temp"}}, "JSON Pointer"),
        ({"field_map": {"a\u0000": "temp"}}, "control characters"),
        ({"field_map": ["temp"]}, "dictionary"),
    ]:
        problem = assert_problem(
            client.post("/v1/sensors", json={**LORAWAN, "sensor_id": "lw-bad", **bad}, headers=w), 422
        )
        assert word in str(problem["errors"]), (bad, problem)


def test_quality_shows_lorawan_figures(client, keys: Keys, api_database_url: str) -> None:
    w = keys.header("write")
    created = client.post(
        "/v1/sensors", json={**LORAWAN, "sensor_id": "lw-q", "dev_eui": "70b3d57ed0000001"}, headers=w
    )
    assert created.status_code == 201, created.text
    with psycopg.connect(api_database_url) as conn:
        key = conn.execute("SELECT sensor_key FROM sensors WHERE sensor_id = 'lw-q'").fetchone()[0]
        conn.execute(
            "INSERT INTO ingest_counters (sensor_key, hour, messages, accepted, ignored_members, fcnt_gaps,"
            " frames_missed) VALUES (%s, date_trunc('hour', now()), 20, 20, 40, 2, 5)",
            (key,),
        )
        conn.commit()
    (row,) = [
        q for q in walk(client, "/v1/quality/sensors", {"city": "bogor"}, keys.header()) if q["sensor_id"] == "lw-q"
    ]
    assert (row["ignored_members_24h"], row["fcnt_gaps_24h"], row["frames_missed_24h"]) == (40, 2, 5)


def test_import_lorawan_sensors(tmp_path: Path, api_database_url: str, monkeypatch, capsys) -> None:
    good = tmp_path / "lora.csv"
    good.write_text(
        "sensor_id,city,district,kind,lat,lon,dev_eui,field_map\n"
        'imp-lw-1,cirebon,Kejaksan,air,-6.71,108.55,A840414BC1875FF3,"{""temperature"": ""temp""}"\n'
        "imp-lw-2,cirebon,Kejaksan,air,-6.71,108.56,,\n"
    )
    assert _import(good, api_database_url, monkeypatch) == 0
    with psycopg.connect(api_database_url) as conn:
        found = conn.execute("SELECT sensor_id, dev_eui, field_map FROM sensors WHERE city = 'cirebon' ORDER BY 1")
        assert found.fetchall() == [("imp-lw-1", "a840414bc1875ff3", {"temperature": "temp"}), ("imp-lw-2", None, None)]
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "- {sensor_id: imp-lw-3, city: cirebon, district: Kejaksan, kind: air, lat: -6.7, lon: 108.5,"
        " dev_eui: '0000000000000001'}\n"
        "- {sensor_id: imp-lw-4, city: cirebon, district: Kejaksan, kind: air, lat: -6.7, lon: 108.5,"
        " dev_eui: '0000000000000001'}\n"
    )
    assert _import(twice, api_database_url, monkeypatch) == 2
    assert "dev_eui 0000000000000001" in capsys.readouterr().err
    taken = tmp_path / "taken.yaml"
    taken.write_text(
        "- {sensor_id: imp-lw-5, city: cirebon, district: Kejaksan, kind: air, lat: -6.7, lon: 108.5,"
        " dev_eui: A840414BC1875FF3}\n"
    )
    assert _import(taken, api_database_url, monkeypatch) == 2
    assert "imp-lw-1" in capsys.readouterr().err
    with psycopg.connect(api_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sensors WHERE city = 'cirebon'").fetchone()[0] == 2
