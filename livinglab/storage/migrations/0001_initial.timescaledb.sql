-- TimescaleDB: readings and 1-minute aggregates become hypertables partitioned on time.
-- :chunk_interval is replaced by the `chunk_interval` setting when the migration runs.
SELECT create_hypertable('readings', by_range('ts', INTERVAL :chunk_interval));
SELECT create_hypertable('agg_1m', by_range('window_start', INTERVAL '7 days'));
