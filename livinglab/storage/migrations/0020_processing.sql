-- Processing: the rollup work queue, per-sensor hourly completeness and processor bookkeeping.

-- Hours and days whose raw readings changed, queued by the processor after it computes their minutes. Same claim
-- protocol as dirty_windows (FOR UPDATE SKIP LOCKED, then a lease; deleted only if `version` is unchanged).
-- `due_at` delays the recomputation of a window that keeps changing (the current hour and day) so its raw readings
-- are not read again for every minute; it is set when the row is created or released, not when it is bumped, so a
-- busy window is still computed within the delay.
CREATE TABLE dirty_rollups (
    sensor_key integer NOT NULL,
    quantity smallint NOT NULL,
    width_s integer NOT NULL CHECK (width_s IN (3600, 86400)),
    window_start timestamptz NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    due_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    claimed_by text,
    PRIMARY KEY (sensor_key, quantity, width_s, window_start)
);
CREATE INDEX dirty_rollups_due_at ON dirty_rollups (due_at);

-- Data completeness per sensor and completed UTC hour: readings received (per quantity at most the number
-- expected) and readings expected (3600 / interval_s per quantity the sensor reported in the 7 days up to the
-- hour). The `data` service level and the API's per-sensor completeness_24h sum these.
CREATE TABLE completeness_hourly (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    received double precision NOT NULL,
    expected double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_key, hour)
);
CREATE INDEX completeness_hourly_hour ON completeness_hourly (hour);

-- Bookkeeping shared by processors (one row per key, locked while in use).
CREATE TABLE processor_state (
    key text PRIMARY KEY,
    value timestamptz
);
INSERT INTO processor_state (key, value) VALUES ('service_levels_until', NULL);
