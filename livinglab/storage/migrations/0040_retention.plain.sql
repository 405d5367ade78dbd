-- Plain PostgreSQL: the retention job deletes old hourly and daily aggregates and counters by time range; BRIN
-- indexes find those ranges for the price of a few pages (0001 already adds them for readings and agg_1m).
CREATE INDEX agg_1h_window_brin ON agg_1h USING brin (window_start);
CREATE INDEX agg_1d_window_brin ON agg_1d USING brin (window_start);
CREATE INDEX ingest_counters_hour_brin ON ingest_counters USING brin (hour);
CREATE INDEX ingest_latency_hour_brin ON ingest_latency USING brin (hour);
