-- TimescaleDB: compression (the columnstore) for raw readings and 1-minute aggregates.
-- Segments are one series each (sensor, quantity), ordered by time, which is how the processor and the API read
-- them: a window or a range of one series decompresses only that series' batches. The compression and retention
-- policies themselves are reconciled from settings by `livinglab migrate` (livinglab.storage.policies), so changing
-- LIVINGLAB_COMPRESS_AFTER or a LIVINGLAB_RETENTION_* interval takes effect on the next migrate.
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor_key, quantity',
    timescaledb.compress_orderby = 'ts'
);
ALTER TABLE agg_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor_key, quantity',
    timescaledb.compress_orderby = 'window_start'
);
