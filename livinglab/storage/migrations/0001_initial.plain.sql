-- Plain PostgreSQL: BRIN indexes on time keep range scans and the retention job cheap on append-mostly tables.
CREATE INDEX readings_ts_brin ON readings USING brin (ts);
CREATE INDEX agg_1m_window_brin ON agg_1m USING brin (window_start);
