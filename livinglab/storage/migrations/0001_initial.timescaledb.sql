-- TimescaleDB: raw readings and every aggregate table become hypertables partitioned on time.
-- :chunk_interval is replaced by the `chunk_interval` setting (LIVINGLAB_CHUNK_INTERVAL) when the migration runs.
-- agg_1m holds at most one row per reading (one per sensor, quantity and minute), so it shares the readings'
-- interval; hourly and daily aggregates hold 60x and 1440x fewer rows, so their chunks span 30x and 365x longer
-- and each stays a useful size. Retention drops whole chunks, so the interval is also the retention granularity.
SELECT create_hypertable('readings', by_range('ts', INTERVAL :chunk_interval));
SELECT create_hypertable('agg_1m', by_range('window_start', INTERVAL :chunk_interval));
SELECT create_hypertable('agg_1h', by_range('window_start', INTERVAL :chunk_interval * 30));
SELECT create_hypertable('agg_1d', by_range('window_start', INTERVAL :chunk_interval * 365));
INSERT INTO platform_info (key, value) VALUES ('chunk_interval', :chunk_interval)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
