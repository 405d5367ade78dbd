-- The initial schema: registry, readings, rejections, work queue, aggregates, indices, counters, API keys.
-- Applied in one transaction by livinglab.storage.migrate. Companion files:
--   0001_initial.timescaledb.sql  applied after this one when TimescaleDB is in use
--   0001_initial.plain.sql        applied after this one on plain PostgreSQL

-- The sensor registry. Sensors get a small integer key; readings and aggregates carry only the key.
CREATE TABLE sensors (
    sensor_key integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id text NOT NULL UNIQUE,
    city text NOT NULL,
    district text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('air', 'traffic')),
    name text NOT NULL,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    interval_s integer NOT NULL DEFAULT 60 CHECK (interval_s > 0),
    road_type text CHECK (road_type IN ('2/2-TT', '4/2-T', '6/2-T', '2/1', '3/1')),
    lanes smallint,
    lane_width_m double precision,
    carriageway_width_m double precision,
    direction_split_pct double precision,
    road_function text CHECK (road_function IN ('arteri_primer', 'kolektor_primer', 'lokal_primer', 'jalan_tol',
        'arteri_sekunder', 'kolektor_sekunder', 'lokal_sekunder', 'lingkungan')),
    city_population bigint,
    side_friction_factor double precision,
    capacity_override_pcu_h double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_city_district ON sensors (city, district);

-- Quantity codes (livinglab.domain.QUANTITIES; a test keeps the two equal).
CREATE TABLE quantities (
    code smallint PRIMARY KEY,
    name text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('air', 'traffic')),
    unit text NOT NULL
);
INSERT INTO quantities (code, name, kind, unit) VALUES
    (1, 'pm25', 'air', 'ug/m3'), (2, 'pm10', 'air', 'ug/m3'), (3, 'no2', 'air', 'ug/m3'),
    (4, 'so2', 'air', 'ug/m3'), (5, 'o3', 'air', 'ug/m3'), (6, 'co', 'air', 'ug/m3'), (7, 'hc', 'air', 'ug/m3'),
    (8, 'temp', 'air', 'Cel'), (9, 'rh', 'air', '%RH'),
    (101, 'sm', 'traffic', 'count'), (102, 'kr', 'traffic', 'count'), (103, 'kb', 'traffic', 'count'),
    (104, 'speed', 'traffic', 'km/h'), (105, 'occupancy', 'traffic', '%');

-- Raw readings, narrow rows, one per (sensor, quantity, ts). Values are in the quantity's canonical unit.
-- No foreign key: it would be checked per row on the COPY path; deleting a sensor deletes its rows explicitly.
CREATE TABLE readings (
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (sensor_key, quantity, ts)
);

-- Rejected messages: kept for inspection and replay. Text taken from payloads is escaped before it lands here.
CREATE TABLE rejected (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic text NOT NULL,
    city text,
    kind text,
    sensor_id text,
    sensor_key integer,
    reason text NOT NULL,
    detail text NOT NULL,
    payload bytea NOT NULL,
    payload_size integer NOT NULL,
    replayed_at timestamptz,
    replay_outcome text
);
CREATE INDEX rejected_received_at ON rejected (received_at);
CREATE INDEX rejected_sensor ON rejected (sensor_id, received_at);
CREATE INDEX rejected_reason ON rejected (reason, received_at);

-- Work queue: 1-minute windows whose readings changed. The ingester inserts or bumps `version`; a processor claims
-- rows (FOR UPDATE SKIP LOCKED, then a lease in `claimed_until`), computes, and deletes a row only if its version is
-- still the one it claimed, so a window re-dirtied during its computation is computed again.
CREATE TABLE dirty_windows (
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    window_start timestamptz NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    marked_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    claimed_by text,
    PRIMARY KEY (sensor_key, quantity, window_start)
);
CREATE INDEX dirty_windows_marked_at ON dirty_windows (marked_at);

-- Windowed aggregates, one table per window width. `final` is derived when read:
-- window_start + width + allowed lateness <= now().
CREATE TABLE agg_1m (
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    window_start timestamptz NOT NULL,
    count integer NOT NULL,
    sum double precision NOT NULL,
    mean double precision,
    min double precision,
    max double precision,
    p50 double precision,
    p95 double precision,
    completeness double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_key, quantity, window_start)
);
CREATE TABLE agg_1h (LIKE agg_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE agg_1h ADD PRIMARY KEY (sensor_key, quantity, window_start);
CREATE TABLE agg_1d (LIKE agg_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE agg_1d ADD PRIMARY KEY (sensor_key, quantity, window_start);

-- Hourly city indices. ISPU and AQI rows are labelled by the end of the last hour they include; traffic rows by
-- the start of their hour (CONTRACT.md section 2).
CREATE TABLE ispu_hourly (
    sensor_key integer NOT NULL,
    window_end timestamptz NOT NULL,
    ispu integer,
    category text,
    colour_hex text,
    critical_parameter text,
    sub_indices jsonb NOT NULL DEFAULT '{}',
    hours_valid integer NOT NULL DEFAULT 0,
    details jsonb NOT NULL DEFAULT '{}',
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_key, window_end)
);
CREATE TABLE aqi_hourly (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    aqi integer,
    category text,
    dominant_pollutant text,
    nowcast jsonb NOT NULL DEFAULT '{}',
    sub_indices jsonb NOT NULL DEFAULT '{}',
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_key, hour)
);
CREATE TABLE traffic_hourly (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    flow_veh_h double precision NOT NULL,
    flow_pcu_h double precision NOT NULL,
    capacity_pcu_h double precision NOT NULL,
    degree_of_saturation double precision NOT NULL,
    los text NOT NULL,
    los_target text NOT NULL,
    los_met boolean NOT NULL,
    mean_speed_kmh double precision,
    completeness double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_key, hour)
);

-- Service-level tallies per district, per hour and rolled up per day, so a 30-day query reads ~30 rows per
-- district and service. achieved = numerator / denominator.
CREATE TABLE service_hourly (
    city text NOT NULL,
    district text NOT NULL,
    service text NOT NULL CHECK (service IN ('air', 'traffic', 'data')),
    period_start timestamptz NOT NULL,
    numerator double precision NOT NULL,
    denominator double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, district, service, period_start)
);
CREATE TABLE service_daily (LIKE service_hourly INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE service_daily ADD PRIMARY KEY (city, district, service, period_start);

-- Per-sensor ingest counters, per UTC hour. `late`: readings that arrived after their window was final.
CREATE TABLE ingest_counters (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    messages bigint NOT NULL DEFAULT 0,
    accepted bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    late bigint NOT NULL DEFAULT 0,
    last_seen timestamptz,
    PRIMARY KEY (sensor_key, hour)
);
-- Ingest latency (received_at - ts) per sensor and hour, as a histogram over the buckets of
-- livinglab.quality.LATENCY_BUCKET_EDGES_S, so percentiles over any span of hours can be merged.
CREATE TABLE ingest_latency (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    bucket smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (sensor_key, hour, bucket)
);

-- Change events for live clients (SSE). The id doubles as the SSE event id, so a client that reconnects with
-- Last-Event-ID gets what it missed. NOTIFY livinglab_events carries the id.
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    type text NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX events_created_at ON events (created_at);

-- API keys, stored as SHA-256 of the key (keys are random and long, so a fast hash is enough).
CREATE TABLE api_keys (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash bytea NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    scope text NOT NULL CHECK (scope IN ('read', 'sensors:write', 'admin')),
    name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
